"""Warm-driver pools as the CLI shows them (``admin warm-pool``): one row a pool, one row a
warm driver, and one pool in detail."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from chidori.cli.client import JsonObject
from chidori.cli.views.cells import as_mapping, format_time, plural, text

WARM_POOL_COLUMNS = ("CLUSTER", "SIZE", "CONFIGURED", "DRIVER SIZE", "DRIVERS")
WARM_DRIVER_COLUMNS = (
    "CLUSTER", "DRIVER", "STATE", "SERVER", "PID", "RESERVED", "IN USE", "CREATED",
)  # fmt: skip
WARM_STATES = ("idle", "starting", "retiring")  # the server's words; no enum for them yet
WARM_STYLES = {"STATE": {"idle": "green", "starting": "yellow", "retiring": "magenta"}}


def warm_shape(memory: Any, cores: Any) -> str:
    """One warm driver's size: ``1g, 1 core``."""
    return f"{text(memory)}, {plural(cores, 'core')}"


def warm_drivers(pool: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    drivers = pool.get("drivers")
    return [d for d in drivers if isinstance(d, dict)] if isinstance(drivers, list) else []


def warm_count_text(pool: Mapping[str, Any]) -> str:
    """``1 idle, 1 starting`` (states in a fixed order), or ``none``."""
    states = [str(d.get("state")) for d in warm_drivers(pool)]
    order = [*WARM_STATES, *sorted(set(states) - set(WARM_STATES))]
    parts = [f"{states.count(s)} {s}" for s in order if s in states]
    return ", ".join(parts) if parts else "none"


def warm_pool_row(pool: JsonObject) -> list[str]:
    return [
        text(pool.get("cluster")),
        text(pool.get("size")),
        text(pool.get("configured_size")),
        warm_shape(pool.get("driver_memory"), pool.get("driver_cores")),
        warm_count_text(pool),
    ]


def warm_driver_rows(pools: Sequence[JsonObject]) -> list[list[str]]:
    """Every warm driver of every pool, by cluster then creation."""
    rows = []
    for pool in pools:
        for driver in warm_drivers(pool):
            rows.append(
                [
                    text(pool.get("cluster")),
                    text(driver.get("id")),
                    text(driver.get("state")),
                    text(driver.get("server_id")),
                    text(driver.get("pid")),
                    warm_shape(driver.get("memory"), driver.get("cores")),
                    text(driver.get("memory_in_use")),
                    format_time(driver.get("created_at")),
                ]
            )
    return rows


def warm_pool_pairs(pool: JsonObject) -> list[tuple[str, str]]:
    """One pool in detail (the answer of ``admin warm-pool set|reset``)."""
    conf = as_mapping(pool.get("conf"))
    size, configured = pool.get("size"), pool.get("configured_size")
    configured_text = text(configured) if size == configured else f"{text(configured)} (overridden)"
    return [
        ("cluster", text(pool.get("cluster"))),
        ("size", f"{text(size)} per server" + (" (off)" if size == 0 else "")),
        ("configured size", configured_text),
        ("driver size", warm_shape(pool.get("driver_memory"), pool.get("driver_cores"))),
        ("conf", ", ".join(f"{k}={v}" for k, v in sorted(conf.items())) or "-"),
        ("drivers", warm_count_text(pool)),
    ]
