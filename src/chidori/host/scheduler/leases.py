"""Leases: this server's right to run its attempts, and the watchdog that enforces it.

A thread renews the server's heartbeat and its attempts' leases every fifth of a lease,
touches the heartbeat file the watchdog process reads, and stops (fences) any driver whose
attempt the store no longer gives this server: after a freeze or a partition, another replica
may have found its lease expired (`recovery`) and run the job again. The watchdog (one helper
process, `chidori.host.watchdog`) stops this server's drivers when the server dies or stops
touching the heartbeat file, before another replica may take the jobs over.

The loop starts this part first and stops the watchdog only after the driver host has
stopped every driver (`loop.Scheduler.stop`).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from chidori import __version__
from chidori.domain.errors import StoreUnavailable
from chidori.domain.states import AttemptState
from chidori.host import watchdog
from chidori.host.driver_host import DriverHost
from chidori.host.scheduler.common import SCHEDULER_LOGGER, SchedulerOptions, Signals
from chidori.store import ServerRegistry

log = logging.getLogger(SCHEDULER_LOGGER)
WATCHDOG_PATH = str(Path(watchdog.__file__))


class Leases:
    def __init__(
        self,
        servers: ServerRegistry,
        drivers: DriverHost,
        options: SchedulerOptions,
        signals: Signals,
        grace_seconds: float,
        fence_dir: Path,
    ) -> None:
        self._servers = servers
        self._drivers = drivers
        self._options = options
        self._signals = signals
        self._grace = grace_seconds
        self._fence_dir = fence_dir
        self._thread: threading.Thread | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Register this server, renew its leases once, start the watchdog and the thread
        that renews them from then on (it ends when `signals.stopped` is set)."""
        self._servers.register_server(
            self._options.server_id, self._options.host, os.getpid(), __version__
        )
        self.keep_leases()
        self._start_watchdog()
        self._thread = threading.Thread(target=self._lease_loop, name="leases", daemon=True)
        self._thread.start()

    def _start_watchdog(self) -> None:
        """One process that stops this server's drivers if the server dies or stops renewing
        its lease: at 0.8 of the lease, before another replica may take the jobs over.
        Started from the thread that lives as long as the server (PDEATHSIG follows it)."""
        self._watchdog = subprocess.Popen(
            [
                sys.executable, "-I", "-S", WATCHDOG_PATH,
                self._options.server_id,
                str(self._options.heartbeat_file),
                str(self._options.lease_seconds * 0.8),
                str(self._grace),
                str(self._fence_dir),
            ],
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip

    def stop_watchdog(self) -> None:
        """Once the drivers are stopped: the watchdog leaves without stopping anything."""
        if self._watchdog is not None:
            self._watchdog.send_signal(signal.SIGUSR1)  # drivers are stopped: leave quietly
            try:
                self._watchdog.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._watchdog.kill()

    def join(self) -> None:
        """Wait for the lease thread to end (`signals.stopped` must be set)."""
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _lease_loop(self) -> None:
        interval = self._options.lease_seconds / 5
        while not self._signals.stopped.wait(interval):
            try:
                self.keep_leases()
            except StoreUnavailable as exc:
                # No touch of the heartbeat: if this lasts, the drivers stop themselves.
                log.warning("could not renew leases: %s", exc)
            except Exception:
                log.exception("lease renewal failed")

    def keep_leases(self) -> None:
        """Renew this server's heartbeat and leases, tell the drivers (heartbeat file), and
        stop any driver whose attempt this server no longer owns: after a freeze or a
        partition another replica may have taken it over (fencing by attempt)."""
        owned = self._servers.heartbeat(self._options.server_id, self._options.lease_seconds)
        self._options.heartbeat_file.parent.mkdir(parents=True, exist_ok=True)
        self._options.heartbeat_file.touch()
        for job_id, attempt in self._drivers.running():
            if (job_id, attempt) not in owned:
                self._drivers.stop(
                    job_id,
                    attempt,
                    AttemptState.LOST,
                    "this server lost its lease; the attempt was taken over",
                )

    def server_stopped(self) -> None:
        """Record that this server stopped (after its drivers did)."""
        self._servers.server_stopped(self._options.server_id)
