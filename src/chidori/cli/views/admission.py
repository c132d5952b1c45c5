"""Admission as the CLI shows it: the queues table and one queue's settings, the capacity
held and free (``admission status``) and the admission limits, globally and per cluster."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chidori.cli.client import JsonObject
from chidori.cli.views.cells import as_mapping, number_text, plural, seconds_text, text

QUEUE_COLUMNS = ("NAME", "PRIORITY", "WEIGHT", "QUOTA", "DEPTH", "RUNNING", "OLDEST WAIT")
CAPACITY_COLUMNS = ("SCOPE", "JOBS", "MEMORY", "CORES")
LIMIT_COLUMNS = ("SCOPE", "MAX RUNNING JOBS", "MAX MEMORY", "MAX CORES")
LIMIT_KEYS = ("max_running_jobs", "max_memory", "max_cores")
UNLIMITED = "unlimited"


def limit_text(value: Any) -> str:
    """A cap as admins write it; ``null`` is no cap."""
    return UNLIMITED if value is None else str(value)


# -- queues --------------------------------------------------------------------------------


def quota_text(doc: Mapping[str, Any]) -> str:
    """A queue's quota in one cell: ``4 jobs, 32g, 16 cores`` (only the caps it has)."""
    parts = []
    if doc.get("max_running_jobs") is not None:
        parts.append(plural(doc["max_running_jobs"], "job"))
    if doc.get("max_memory") is not None:
        parts.append(str(doc["max_memory"]))
    if doc.get("max_cores") is not None:
        parts.append(plural(doc["max_cores"], "core"))
    return ", ".join(parts) if parts else UNLIMITED


def queue_row(queue: JsonObject) -> list[str]:
    return [
        text(queue.get("name")),
        text(queue.get("priority")),
        number_text(queue.get("weight")),
        quota_text(queue),
        text(queue.get("depth")),
        text(queue.get("running")),
        seconds_text(queue.get("oldest_wait_seconds")),
    ]


def queue_pairs(queue: JsonObject, name: str | None = None) -> list[tuple[str, str]]:
    """One queue's settings (and, from ``GET /queues``, its depth and running jobs)."""
    pairs = [
        ("name", text(queue.get("name") or name)),
        ("priority", text(queue.get("priority"))),
        ("weight", number_text(queue.get("weight"))),
        ("max running jobs", limit_text(queue.get("max_running_jobs"))),
        ("max memory", limit_text(queue.get("max_memory"))),
        ("max cores", limit_text(queue.get("max_cores"))),
    ]
    for key in ("depth", "running"):
        if key in queue:
            pairs.append((key, text(queue.get(key))))
    return pairs


# -- capacity and limits -------------------------------------------------------------------


def _held(reserved: Any, limit: Any, free: Any) -> str:
    """``2 of 8 (6 free)``, or ``2 (unlimited)`` without a cap."""
    if limit is None:
        return f"{text(reserved)} ({UNLIMITED})"
    return f"{text(reserved)} of {limit} ({text(free)} free)"


def capacity_row(scope: str, doc: Mapping[str, Any]) -> list[str]:
    limits = as_mapping(doc.get("limits"))
    reserved = as_mapping(doc.get("reserved"))
    free = as_mapping(doc.get("free"))
    return [
        scope,
        _held(reserved.get("jobs"), limits.get("max_running_jobs"), free.get("jobs")),
        _held(reserved.get("memory"), limits.get("max_memory"), free.get("memory")),
        _held(reserved.get("cores"), limits.get("max_cores"), free.get("cores")),
    ]


def capacity_rows(capacity: JsonObject) -> list[list[str]]:
    """The global row, then one per cluster (by name)."""
    rows = [capacity_row("global", capacity)]
    clusters = as_mapping(capacity.get("clusters"))
    for name in sorted(clusters):
        rows.append(capacity_row(f"cluster {name}", as_mapping(clusters[name])))
    return rows


def limits_rows(limits: JsonObject) -> list[list[str]]:
    """Global limits, then each cluster's (by name); ``unlimited`` for no cap."""
    rows = [["global", *(limit_text(limits.get(key)) for key in LIMIT_KEYS)]]
    clusters = as_mapping(limits.get("clusters"))
    for name in sorted(clusters):
        doc = as_mapping(clusters[name])
        rows.append([f"cluster {name}", *(limit_text(doc.get(key)) for key in LIMIT_KEYS)])
    return rows
