"""The driver host: runs each admitted attempt's driver as a child process of this server.

Each driver gets its own process group and a per-attempt log file (stdout and stderr). One
thread per running driver waits for its exit, so an exit is reported at once (the threads are
reused from driver to driver); a housekeeping loop scans new log output for the Spark
application id and enforces timeouts.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from chidori.backends.base import DriverCommand
from chidori.backends.spark_logs import find_application_id, summarize_failure
from chidori.domain.records import Outcome
from chidori.domain.states import AttemptState
from chidori.host.isolation import Isolation, Launch
from chidori.host.processes import group_alive, server_tagged_processes, stop_attempt_processes
from chidori.host.spark_progress import SparkProgressCollector
from chidori.observe.logs import job_context
from chidori.storage.logship import LogShipper

log = logging.getLogger(__name__)

ExitCallback = Callable[[int, int, Outcome], None]
AppIdCallback = Callable[[int, int, str], None]
_APP_ID_SCAN_LIMIT = 4 * 1024 * 1024  # stop looking for the app id after this much output


@dataclass
class _Driver:
    job_id: int
    attempt: int
    process: subprocess.Popen[bytes]
    log_path: Path
    deadline: float | None
    timeout: float | None
    kind: str = ""
    app_id: str | None = None
    scanned: int = 0
    stop_reason: str | None = None
    stop_state: AttemptState | None = None
    stopping: threading.Event = field(default_factory=threading.Event)
    # Set once the start is recorded: a driver that exits at once must not have its end
    # recorded before its start (the start carries the pid and the log path).
    start_recorded: threading.Event = field(default_factory=threading.Event)
    ended: threading.Event = field(default_factory=threading.Event)  # its exit was reported
    owner_uid: int | None = None  # the sandbox's uid: its event log must be this uid's
    adopted_ms: int = 0  # Spark jobs submitted before (a warm driver's warm-up) are not its own


class ReusedThreads:
    """Daemon threads that run one task at a time and are kept for the next task. Starting a
    new thread per driver put a thread start, a few milliseconds on a busy machine, between
    a freed slot and the next process. Threads idle for `idle_seconds` end."""

    def __init__(self, name: str, idle_seconds: float = 60.0) -> None:
        self._name = name
        self._idle_seconds = idle_seconds
        self._tasks: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0  # threads waiting for a task that no caller has counted on yet

    def run(self, task: Callable[[], None]) -> None:
        with self._lock:
            spare = self._idle > 0
            if spare:
                self._idle -= 1
        self._tasks.put(task)
        if not spare:
            threading.Thread(target=self._work, name=self._name, daemon=True).start()

    def _work(self) -> None:
        while True:
            try:
                task = self._tasks.get(timeout=self._idle_seconds)
            except queue.Empty:
                with self._lock:
                    if self._idle > 0:  # no caller counts on this thread: end it
                        self._idle -= 1
                        return
                continue  # a caller counted on it: its task is (or will be) in the queue
            try:
                task()
            except Exception:
                log.exception("%s: task failed", self._name)
            with self._lock:
                self._idle += 1


def log_path_for(log_dir: Path, job_id: int, attempt: int) -> Path:
    return log_dir / str(job_id) / f"attempt-{attempt}.log"


def spawn_driver(launch: Launch, log_path: Path) -> subprocess.Popen[bytes]:
    """Start a driver process in its own session, its output appended to `log_path` (a file,
    not a pipe, so it outlives this server without blocking). Raises OSError, or ValueError
    for an argument the OS cannot carry."""
    try:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        launch.cwd.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log_file:
            return subprocess.Popen(
                launch.argv,
                env=launch.env,
                cwd=launch.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
                pass_fds=launch.pass_fds,
            )
    finally:
        launch.started()


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


class DriverHost:
    def __init__(
        self,
        log_dir: Path,
        on_exit: ExitCallback,
        on_app_id: AppIdCallback,
        server_id: str,
        fence_dir: Path,
        isolation: Isolation,
        grace_seconds: float = 5.0,
        housekeeping_interval: float = 0.25,
        sweep_interval: float = 1.0,
        log_shipper: LogShipper | None = None,
        progress: SparkProgressCollector | None = None,
    ) -> None:
        """`log_shipper`: copies each driver's log into shared storage (other replicas serve
        it from there), when replicas share one. `progress`: reads each Spark driver's event
        log into its live progress (None: collection is off)."""
        self._progress = progress
        self._log_dir = log_dir
        self._shipper = log_shipper
        self._isolation = isolation
        self._server_id = server_id
        self._fence_dir = fence_dir
        self._on_exit = on_exit
        self._on_app_id = on_app_id
        self._grace = grace_seconds
        self._interval = housekeeping_interval
        self._drivers: dict[tuple[int, int], _Driver] = {}
        self._lock = threading.Lock()
        # Held from a driver's spawn until it is registered, so the stray sweep never takes a
        # driver that is starting for a leftover.
        self._spawning = threading.Lock()
        self._sweep_interval = sweep_interval
        self._strays_signalled: set[int] = set()
        self._closed = threading.Event()
        self._waiters = ReusedThreads("driver-waiter")
        self._housekeeper = threading.Thread(
            target=self._housekeeping, name="driver-housekeeping", daemon=True
        )
        self._housekeeper.start()

    def start(
        self,
        job_id: int,
        attempt: int,
        command: DriverCommand,
        timeout: float | None,
        kind: str = "",
        user: str | None = None,
    ) -> tuple[int, Path]:
        """Start a driver (sandboxed when isolation is on, its working folder its own).
        Returns (pid, log path). Raises OSError or ValueError if it cannot be started,
        ChidoriError when no sandbox can be had."""
        log_path = log_path_for(self._log_dir, job_id, attempt)
        # The server's tag lets its watchdog stop the driver if this server dies or stops
        # renewing its lease (see chidori.host.watchdog).
        tagged = replace(command, env={**command.env, "CHIDORI_SERVER_ID": self._server_id})
        launch = self._isolation.launch(tagged, [command.cwd], user)
        with self._spawning:
            process = spawn_driver(launch, log_path)
            owner = launch.identity.uid if launch.identity is not None else None
            self.adopt(job_id, attempt, process, log_path, timeout, kind, owner)
        return process.pid, log_path

    def adopt(
        self,
        job_id: int,
        attempt: int,
        process: subprocess.Popen[bytes],
        log_path: Path,
        timeout: float | None,
        kind: str = "",
        owner_uid: int | None = None,
    ) -> None:
        """Take charge of a driver that was started before its job (a warm driver that has
        just taken this attempt): its exit, log scanning, timeout and stop work as for any.
        `owner_uid`: the uid its sandbox runs as, when known (a warm driver's application id
        was read before the job's code ran, so its event log is found without it)."""
        driver = _Driver(
            job_id=job_id,
            attempt=attempt,
            process=process,
            log_path=log_path,
            timeout=timeout,
            deadline=time.monotonic() + timeout if timeout else None,
            kind=kind,
            owner_uid=owner_uid,
            adopted_ms=int(time.time() * 1000),
        )
        with self._lock:
            self._drivers[(job_id, attempt)] = driver
        if self._shipper is not None:
            self._shipper.track(job_id, attempt, log_path)
        self._waiters.run(lambda: self._wait(driver))

    def start_recorded(self, job_id: int, attempt: int) -> None:
        """The scheduler recorded this driver's start: its end may be reported now."""
        with self._lock:
            driver = self._drivers.get((job_id, attempt))
        if driver is not None:
            driver.start_recorded.set()

    def running(self, kind: str | None = None) -> list[tuple[int, int]]:
        """(job id, attempt) of the drivers running here (of one job kind, if given)."""
        with self._lock:
            if kind is None:
                return list(self._drivers)
            return [key for key, driver in self._drivers.items() if driver.kind == kind]

    def stop(self, job_id: int, attempt: int, state: AttemptState, reason: str) -> bool:
        """Stop a driver (its whole process group and every tagged process). The exit is then
        reported with `state` and `reason`. Returns False if this host does not run it."""
        with self._lock:
            driver = self._drivers.get((job_id, attempt))
        if driver is None:
            return False
        self._stop(driver, state, reason)
        return True

    def _stop(self, driver: _Driver, state: AttemptState, reason: str) -> None:
        if driver.stopping.is_set():
            return
        driver.stop_state, driver.stop_reason = state, reason
        driver.stopping.set()
        threading.Thread(
            target=stop_attempt_processes,
            args=(driver.job_id, driver.attempt, driver.process.pid, self._grace, self._server_id),
            name=f"stop-{driver.job_id}-{driver.attempt}",
            daemon=True,
        ).start()

    def shutdown(self, reason: str) -> None:
        """Stop every driver, reporting each attempt LOST with `reason`, and wait for them."""
        self._closed.set()
        with self._lock:
            drivers = list(self._drivers.values())
        for driver in drivers:
            self._stop(driver, AttemptState.LOST, reason)
        deadline = time.monotonic() + self._grace + 5
        for driver in drivers:
            if not driver.ended.wait(timeout=max(0.1, deadline - time.monotonic())):
                log.warning("driver of job %s did not stop in time", driver.job_id)

    def _wait(self, driver: _Driver) -> None:
        threading.current_thread().name = f"driver-{driver.job_id}-{driver.attempt}"
        try:
            with job_context(driver.job_id, driver.attempt):  # this thread's logs name the job
                self._report_exit(driver, driver.process.wait())
        finally:
            threading.current_thread().name = "driver-waiter"
            driver.ended.set()

    def _report_exit(self, driver: _Driver, code: int) -> None:
        driver.start_recorded.wait(timeout=30)
        if not driver.stopping.is_set() and group_alive(driver.process.pid):
            # The driver is gone, but processes it started linger in its group. (Ones that
            # left the group are found by their tag in the next stray sweep: a scan of /proc
            # per job would cost more than starting a small job.)
            stop_attempt_processes(
                driver.job_id, driver.attempt, driver.process.pid, 1.0, self._server_id
            )
        self._scan_app_id(driver)
        with self._lock:
            self._drivers.pop((driver.job_id, driver.attempt), None)
        if self._progress is not None:
            # Before the end is recorded: whoever sees the job end finds its final summary.
            self._poll_progress(driver)
            self._progress.finish(driver.job_id, driver.attempt)
        outcome = self._outcome(driver, code)
        if self._shipper is not None:
            # Before the end is recorded: whoever sees the job end finds its whole log.
            self._shipper.finish(driver.job_id, driver.attempt)
        try:
            self._on_exit(driver.job_id, driver.attempt, outcome)
        except Exception:
            log.exception("recording the end of job %s attempt %s", driver.job_id, driver.attempt)

    def _outcome(self, driver: _Driver, code: int) -> Outcome:
        if driver.stop_state is not None:
            return Outcome(driver.stop_state, driver.stop_reason, code)
        if code == 0:
            return Outcome(AttemptState.SUCCEEDED, None, 0)
        if (self._fence_dir / f"{driver.job_id}-{driver.attempt}").exists():
            return Outcome(
                AttemptState.LOST,
                "the watchdog stopped the driver: its server did not renew the lease in time",
                code,
            )
        if code < 0:
            return Outcome(AttemptState.FAILED, f"driver killed by {_signal_name(code)}", code)
        detail = summarize_failure(_tail(driver.log_path, 64 * 1024))
        reason = f"driver exited with code {code}"
        if code > 128 and code - 128 in (signal.SIGTERM, signal.SIGKILL, signal.SIGINT):
            reason += f" ({signal.Signals(code - 128).name})"
        return Outcome(AttemptState.FAILED, f"{reason}: {detail}" if detail else reason, code)

    def _scan_app_id(self, driver: _Driver) -> None:
        if (
            driver.app_id is not None
            or driver.scanned >= _APP_ID_SCAN_LIMIT
            or driver.kind == "python"  # no Spark application to find
        ):
            return
        try:
            with open(driver.log_path, "rb") as handle:
                # Re-read a little before the last position: a line may have been cut in two.
                start = max(0, driver.scanned - 512)
                handle.seek(start)
                chunk = handle.read(_APP_ID_SCAN_LIMIT - start)
        except OSError:
            return
        driver.scanned = start + len(chunk)
        app_id = find_application_id(chunk.decode("utf-8", "replace"))
        if app_id is not None:
            driver.app_id = app_id
            try:
                self._on_app_id(driver.job_id, driver.attempt, app_id)
            except Exception:
                log.exception("recording the application id of job %s", driver.job_id)

    def _poll_progress(self, driver: _Driver) -> None:
        if self._progress is None or driver.app_id is None or driver.kind == "python":
            return
        try:
            self._progress.poll(
                driver.job_id, driver.attempt, driver.app_id, driver.owner_uid, driver.adopted_ms
            )
        except Exception:
            log.exception("reading the Spark progress of job %s", driver.job_id)

    def sweep_strays(self) -> list[int]:
        """Stop processes tagged with this server and an attempt it no longer runs (left
        behind by a driver that has ended): SIGTERM when first seen, SIGKILL on the next sweep.
        Returns the pids signalled."""
        found = server_tagged_processes(self._server_id)
        with self._spawning, self._lock:
            live = set(self._drivers)
        signalled = []
        for pid, job_id, attempt in found:
            if (job_id, attempt) in live:
                continue
            sig = signal.SIGKILL if pid in self._strays_signalled else signal.SIGTERM
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                continue
            log.info("stopping process %s left by job %s attempt %s", pid, job_id, attempt)
            signalled.append(pid)
        self._strays_signalled = set(signalled)
        return signalled

    def _housekeeping(self) -> None:
        last_sweep = time.monotonic()
        while not self._closed.wait(self._interval):
            if time.monotonic() - last_sweep >= self._sweep_interval:
                last_sweep = time.monotonic()
                try:
                    self.sweep_strays()
                except Exception:
                    log.exception("sweeping leftover processes failed")
            with self._lock:
                drivers = list(self._drivers.values())
            now = time.monotonic()
            for driver in drivers:
                self._scan_app_id(driver)
                self._poll_progress(driver)
                if driver.deadline is not None and now > driver.deadline:
                    self._stop(driver, AttemptState.FAILED, f"timed out after {driver.timeout:g} s")


def _tail(path: Path, size: int) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, os.path.getsize(path) - size))
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
