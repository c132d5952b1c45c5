"""The settings of the Spark Connect front door (chidori.connect): the `connect:` section of
the config file, with the CHIDORI_CONNECT_* variables over it. No port: the door is off.

`chidori.config` imports this module, so it raises its own `ConnectConfigError` (a
ValueError), which the caller wraps in `ConfigError`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chidori.domain.units import format_memory, parse_duration_seconds, parse_memory_mib

DEFAULT_IDLE_TIMEOUT_SECONDS = 1800.0


class ConnectConfigError(ValueError):
    pass


@dataclass(frozen=True)
class ConnectConfig:
    port: int | None = None  # None: no front door
    host: str = "127.0.0.1"
    # Certificate chain and key (PEM files): required unless the door binds loopback only.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # A user's Connect server ends after this long with no operation and no request.
    idle_timeout_seconds: float = DEFAULT_IDLE_TIMEOUT_SECONDS
    cluster: str = "local"
    queue: str = "default"
    driver_memory: str = "1g"
    # What the door asks clients to wait (google.rpc.RetryInfo) while a server is not ready.
    retry_delay_seconds: float = 2.0
    # How long the door holds a call while the server starts before it answers UNAVAILABLE:
    # the client's own back-off grows to a minute after a few retries, and a server that
    # became ready meanwhile would wait for it (or reach its idle timeout first).
    hold_seconds: float = 30.0

    @property
    def enabled(self) -> bool:
        return self.port is not None

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _seconds(value: Any, what: str) -> float:
    try:
        seconds = parse_duration_seconds(value)
    except (TypeError, ValueError) as exc:
        raise ConnectConfigError(f"{what} must be a duration such as 90s or 30m") from exc
    if seconds <= 0:
        raise ConnectConfigError(f"{what} must be positive")
    return seconds


def load_connect(environ: Mapping[str, str], raw: Any, main_port: int) -> ConnectConfig:
    """The door's settings, every value checked here so a bad one stops the start."""
    raw = raw or {}
    if not isinstance(raw, Mapping):
        raise ConnectConfigError("connect must be a mapping (port, host, tls_cert, ...)")

    def pick(variable: str, key: str, default: Any = None) -> Any:
        return environ.get(variable) or raw.get(key, default)

    port_text = pick("CHIDORI_CONNECT_PORT", "port")
    port: int | None = None
    if port_text not in (None, ""):
        try:
            port = int(port_text)
        except (TypeError, ValueError) as exc:
            raise ConnectConfigError(
                f"CHIDORI_CONNECT_PORT must be a port number, not {port_text!r}"
            ) from exc
        if not 0 < port < 65536 or port == main_port:
            raise ConnectConfigError(
                f"CHIDORI_CONNECT_PORT must be a port number other than the server's, not {port}"
            )
    host = str(pick("CHIDORI_CONNECT_HOST", "host", "127.0.0.1"))
    cert, key = (
        pick("CHIDORI_CONNECT_TLS_CERT", "tls_cert"),
        pick("CHIDORI_CONNECT_TLS_KEY", "tls_key"),
    )
    if bool(cert) != bool(key):
        raise ConnectConfigError("connect.tls_cert and connect.tls_key go together")
    if port is not None and not cert and not _is_loopback(host):
        # Tokens must not cross a network in the clear; the stock client agrees (it refuses a
        # token over plain text to anything but "localhost").
        raise ConnectConfigError(
            f"the Connect door on {host} needs TLS: set CHIDORI_CONNECT_TLS_CERT and _KEY"
        )
    memory = str(pick("CHIDORI_CONNECT_DRIVER_MEMORY", "driver_memory", "1g"))
    try:
        memory = format_memory(parse_memory_mib(memory))
    except ValueError as exc:
        raise ConnectConfigError(f"connect.driver_memory: {exc}") from exc
    return ConnectConfig(
        port=port,
        host=host,
        tls_cert=Path(cert).resolve() if cert else None,
        tls_key=Path(key).resolve() if key else None,
        idle_timeout_seconds=_seconds(
            pick("CHIDORI_CONNECT_IDLE_TIMEOUT", "idle_timeout", DEFAULT_IDLE_TIMEOUT_SECONDS),
            "CHIDORI_CONNECT_IDLE_TIMEOUT",
        ),
        cluster=str(raw.get("cluster", "local")),
        queue=str(raw.get("queue", "default")),
        driver_memory=memory,
        retry_delay_seconds=_seconds(raw.get("retry_delay", 2.0), "connect.retry_delay"),
        hold_seconds=_seconds(pick("CHIDORI_CONNECT_HOLD", "hold", 30.0), "CHIDORI_CONNECT_HOLD"),
    )
