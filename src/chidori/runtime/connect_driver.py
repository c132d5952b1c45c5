"""The driver of a Spark Connect server, run by spark-submit (client mode) as a PySpark
application: `connect_driver.py CONTROL_DIR [IDLE_TIMEOUT_SECONDS]`.

Only the standard library and pyspark: this runs inside spark-submit, not inside Chidori.
It starts the SparkSession with Spark's own Connect plugin listening on a loopback port the
system picks, guarded by a secret made here (`spark.connect.authenticate.token`), then writes
`CONTROL_DIR/endpoint` (atomically, mode 0600): `{"port": P, "token": SECRET}`. Chidori's
front door (chidori.connect) reads it and is the only caller that knows the secret: the
secret never goes on a command line, into the job's spec or into the store, and Spark redacts
it (its default `spark.redaction.regex` matches "token") in the event log.

The server stops after IDLE_TIMEOUT_SECONDS (default 30 minutes) with no operation running
and no request from any session, so an abandoned server frees its slot; SIGTERM (a cancel)
interrupts every operation and stops it at once.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

DEFAULT_IDLE_TIMEOUT = 1800.0
POLL_SECONDS = 0.5
PLUGIN = "org.apache.spark.sql.connect.SparkConnectPlugin"


def write_private(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.replace(partial, path)


def _connect_service(spark: Any) -> Any:
    # The Scala object itself: its class has no static forwarders py4j could call.
    jvm = spark.sparkContext._jvm
    module = jvm.java.lang.Class.forName(
        "org.apache.spark.sql.connect.service.SparkConnectService$"
    ).getField("MODULE$")
    return module.get(None)


def last_request_ms(service: Any, since_ms: float) -> float | None:
    """When the server was last busy (epoch ms, at least `since_ms`), or None while an
    operation runs: the latest request of any of its sessions."""
    if service.executionManager().listActiveExecutions().isRight():
        return None
    latest = since_ms
    sessions = service.sessionManager().listActiveSessions().iterator()
    while sessions.hasNext():
        latest = max(latest, float(sessions.next().lastAccessTimeMs()))
    return latest


class Driver:
    def __init__(self, control: Path, idle_timeout: float) -> None:
        self.control = control
        self.idle_timeout = idle_timeout
        self.stopping = threading.Event()

    def serve(self) -> int:
        from pyspark.sql import SparkSession

        self.control.mkdir(parents=True, exist_ok=True, mode=0o700)
        token = secrets.token_urlsafe(32)
        spark = (
            SparkSession.builder.config("spark.plugins", PLUGIN)
            .config("spark.connect.grpc.binding.address", "127.0.0.1")
            .config("spark.connect.grpc.binding.port", "0")
            .config("spark.connect.authenticate.token", token)
            .getOrCreate()
        )
        service = _connect_service(spark)
        port = int(service.localPort())
        signal.signal(signal.SIGTERM, lambda *_: self.stopping.set())
        write_private(self.control / "endpoint", json.dumps({"port": port, "token": token}))
        print(
            f"Spark Connect server ready on 127.0.0.1:{port} "
            f"(application {spark.sparkContext.applicationId})",
            flush=True,
        )
        try:
            self._wait_until_idle(service)
        finally:
            # A cancel or the idle timeout: every operation is interrupted before Spark stops,
            # so clients get an error at once rather than a stream that hangs.
            service.executionManager().interruptAllRPCs()
            spark.stop()
        return 0

    def _wait_until_idle(self, service: Any) -> None:
        busy_ms = time.time() * 1000
        while not self.stopping.wait(POLL_SECONDS):
            now_ms = time.time() * 1000
            last = last_request_ms(service, busy_ms)
            busy_ms = now_ms if last is None else last
            if now_ms - busy_ms > self.idle_timeout * 1000:
                print(f"Spark Connect idle for {self.idle_timeout:g} s: stopping", flush=True)
                return
        print("Spark Connect server asked to stop", flush=True)


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: connect_driver.py CONTROL_DIR [IDLE_TIMEOUT_SECONDS]", file=sys.stderr)
        return 2
    idle = float(argv[2]) if len(argv) > 2 else DEFAULT_IDLE_TIMEOUT
    return Driver(Path(argv[1]), idle).serve()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
