"""The warm drivers this server runs: start them, notice when they are ready or gone, hand
one job to one of them, stop them.

What is reserved for them lives in the store (`warm_drivers`, counted by admission); this
module only keeps the processes. A warm driver writes its output to its own log until a job
takes it over; the log file is then renamed to the attempt's log (the open file keeps
writing to the same inode), so the job's log begins with the driver's start-up.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from chidori.backends.base import DriverCommand
from chidori.host.driver_host import spawn_driver
from chidori.host.isolation import Isolation
from chidori.host.jobfs import JobFolder
from chidori.host.processes import session_rss, stop_group

log = logging.getLogger(__name__)
GoneCallback = Callable[[str], None]


@dataclass
class _WarmProcess:
    id: str
    cluster: str
    process: subprocess.Popen[bytes]
    control: Path
    log_path: Path
    claimed: bool = False  # a job was admitted onto it; hand_over follows
    handed_over: bool = False
    stopping: bool = False


@dataclass(frozen=True)
class Handover:
    """A job now runs in a warm driver's process: `log_path` is the attempt's log."""

    process: subprocess.Popen[bytes]
    log_path: Path


class Refused(Exception):
    """The warm driver cannot run the job (conf it cannot honour, or it did not answer)."""


class WarmPool:
    def __init__(
        self,
        work_dir: Path,
        log_dir: Path,
        server_id: str,
        on_gone: GoneCallback,
        isolation: Isolation,
    ) -> None:
        self._work_dir = work_dir
        self._isolation = isolation
        self._log_dir = log_dir
        self._server_id = server_id
        self._on_gone = on_gone
        self._drivers: dict[str, _WarmProcess] = {}
        self._lock = threading.Lock()

    def control_dir(self, warm_id: str) -> Path:
        return self._work_dir / "warm" / warm_id

    def job_dir(self, warm_id: str) -> Path:
        """The working folder of the job a warm driver takes (inside what its sandbox sees)."""
        return self.control_dir(warm_id) / "job"

    def start(self, warm_id: str, cluster: str, command: DriverCommand) -> int:
        """Start a warm driver. Returns its pid. Raises OSError if it cannot be started."""
        control = self.control_dir(warm_id)
        log_path = self._log_dir / "warm" / f"{warm_id}.log"
        env = {**command.env, "CHIDORI_SERVER_ID": self._server_id, "CHIDORI_WARM_ID": warm_id}
        job_dir = self.job_dir(warm_id)
        job_dir.mkdir(parents=True, exist_ok=True)
        launch = self._isolation.launch(replace(command, env=env), [control, job_dir])
        process = spawn_driver(launch, log_path)
        driver = _WarmProcess(warm_id, cluster, process, control, log_path)
        with self._lock:
            self._drivers[warm_id] = driver
        threading.Thread(
            target=self._wait, args=(driver,), name=f"warm-{warm_id}", daemon=True
        ).start()
        return process.pid

    def _wait(self, driver: _WarmProcess) -> None:
        code = driver.process.wait()
        with self._lock:
            self._drivers.pop(driver.id, None)
        if driver.handed_over:
            return  # the driver host reports the job's end
        if not driver.stopping:
            log.warning("warm driver %s exited with code %s while idle", driver.id, code)
            stop_group(driver.process.pid, 1.0)  # what it started may linger
        try:
            self._on_gone(driver.id)
        except Exception:
            log.exception("forgetting warm driver %s", driver.id)

    def ids(self) -> set[str]:
        """The warm drivers no job has been admitted onto (waiting, or being stopped)."""
        with self._lock:
            return {d.id for d in self._drivers.values() if not d.claimed}

    def claim(self, warm_id: str) -> None:
        """A job was admitted onto this driver (its reservation row is gone): keep it for the
        hand-over."""
        with self._lock:
            driver = self._drivers.get(warm_id)
            if driver is not None:
                driver.claimed = True

    def _folder(self, warm_id: str) -> JobFolder:
        """The control folder, as the sandboxed driver may have changed it (chidori.host.jobfs)."""
        return JobFolder(self._work_dir / "warm", [warm_id])

    def is_ready(self, warm_id: str) -> bool:
        return self._folder(warm_id).exists("ready")

    def memory_bytes(self, warm_id: str) -> int:
        """Resident memory of the driver's whole session (JVM, Python driver, Python workers)."""
        with self._lock:
            driver = self._drivers.get(warm_id)
        if driver is None:
            return 0
        return session_rss(driver.process.pid)

    def hand_over(
        self, warm_id: str, job: dict[str, Any], log_path: Path, timeout: float = 10.0
    ) -> Handover:
        """Give `job` to an idle warm driver and wait for it to take it. Raises Refused (the
        driver is then stopped) when it refuses, dies or does not answer in time."""
        with self._lock:
            driver = self._drivers.get(warm_id)
        if driver is None:
            raise Refused("the warm driver had exited")
        folder = self._folder(warm_id)
        if not folder.write("job.json", data=json.dumps(job).encode()):
            self.stop(warm_id)
            raise Refused("the warm driver's control folder is not usable")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if folder.exists("job.taken"):
                log_path.parent.mkdir(parents=True, exist_ok=True)
                driver.handed_over = True
                os.replace(driver.log_path, log_path)
                return Handover(driver.process, log_path)
            refusal = folder.read("job.refused", limit=4096)
            if refusal is not None:
                self.stop(warm_id)
                raise Refused(refusal.decode("utf-8", "replace"))
            if driver.process.poll() is not None:
                raise Refused("the warm driver exited before taking the job")
            time.sleep(0.005)
        self.stop(warm_id)
        raise Refused(f"the warm driver did not take the job within {timeout:g} s")

    def stop(self, warm_id: str, grace: float = 2.0) -> None:
        """Stop an idle warm driver (in the background); `on_gone` follows its exit."""
        with self._lock:
            driver = self._drivers.get(warm_id)
        if driver is None or driver.handed_over or driver.stopping:
            return
        driver.stopping = True
        threading.Thread(
            target=stop_group,
            args=(driver.process.pid, grace),
            name=f"stop-{warm_id}",
            daemon=True,
        ).start()

    def shutdown(self, grace: float = 2.0) -> None:
        with self._lock:
            drivers = [d for d in self._drivers.values() if not d.handed_over]
        for driver in drivers:
            driver.stopping = True
            stop_group(driver.process.pid, grace)
