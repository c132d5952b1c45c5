"""The scheduler: admits queued jobs, launches their drivers, reacts to cancels and losses.

It wakes on events (a submission, a finished driver, a cancel) and also every `tick` seconds,
so changes made by other replicas are seen too. Every step is small, idempotent and reads the
truth from the store, so it is safe to re-run on any replica at any time.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from chidori import __version__
from chidori.backends.base import HostedBackend, LaunchRequest
from chidori.domain.errors import ChidoriError, StoreUnavailable
from chidori.domain.records import Attempt, Claim, Ending, Outcome
from chidori.domain.states import AttemptState
from chidori.host import watchdog
from chidori.host.driver_host import DriverHost, log_path_for
from chidori.host.isolation import Isolation
from chidori.host.processes import stop_attempt_processes
from chidori.host.warm_pool import Refused, WarmPool
from chidori.storage.artifacts import ArtifactStore
from chidori.storage.logship import LogShipper
from chidori.store import Repositories
from chidori.store.admission import AdmissionStore, WarmPlan

log = logging.getLogger(__name__)
WATCHDOG_PATH = str(Path(watchdog.__file__))
# How long a driver's exit waits for an admit step under way before recording its end alone.
_EXIT_ADMIT_WAIT_SECONDS = 2.0


@dataclass(frozen=True)
class SchedulerOptions:
    server_id: str
    host: str
    work_dir: Path
    heartbeat_file: Path
    lease_seconds: float = 15.0
    lost_retry_limit: int = 3
    shutdown_mode: str = "requeue"  # or "wait": let running drivers finish first
    shutdown_grace_seconds: float = 30.0
    tick_seconds: float = 1.0
    min_step_interval: float = 0.02
    full_step_interval: float = 0.1
    # Tests only: pause this long (after writing `<home>/run/before-spawn-JOB`) between a
    # claim and its driver's start, so a test can freeze the server there.
    pause_before_spawn: float = 0.0


class Scheduler:
    def __init__(
        self,
        store: Repositories,
        admission: AdmissionStore,
        backends: Mapping[str, HostedBackend],
        artifacts: ArtifactStore,
        options: SchedulerOptions,
        driver_log_dir: Path,
        grace_seconds: float,
        isolation: Isolation,
        log_shipper: LogShipper | None = None,
    ) -> None:
        self._db = store.db
        self._jobs = store.jobs
        self._attempts = store.attempts
        self._servers = store.servers
        self._admission = admission
        self._backends = backends
        self._artifacts = artifacts
        self._options = options
        self._wakeup = threading.Event()
        self._capacity_freed = threading.Event()
        self._stopped = threading.Event()
        self._admitting = True
        self._thread: threading.Thread | None = None
        self._last_reap = 0.0
        self._lease_thread: threading.Thread | None = None
        self._launcher = ThreadPoolExecutor(max_workers=8, thread_name_prefix="launch")
        self._fence_dir = options.heartbeat_file.parent / f"fenced-{options.server_id}"
        self._log_dir = driver_log_dir
        self.drivers = DriverHost(
            driver_log_dir,
            on_exit=self._driver_exited,
            on_app_id=self._app_id_found,
            server_id=options.server_id,
            fence_dir=self._fence_dir,
            isolation=isolation,
            grace_seconds=grace_seconds,
            log_shipper=log_shipper,
        )
        self._grace = grace_seconds
        self._watchdog: subprocess.Popen[bytes] | None = None
        self.warm = WarmPool(
            options.work_dir, driver_log_dir, options.server_id, self._warm_gone, isolation
        )
        warm_conf = {name: b.warm_conf() for name, b in backends.items()}
        self._warm_plan = WarmPlan(
            {name: backends[name].cluster.warm_pool for name, c in warm_conf.items() if c},
            {name: c for name, c in warm_conf.items() if c},
        )
        self._warm_broken_until: dict[str, float] = {}
        self._last_warm_check = 0.0
        self._last_cancel_check = 0.0
        self._full = False
        # One admit step at a time in this process (the loop's, or a driver exit's).
        self._admit_lock = threading.Lock()

    # ---- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        self._servers.register_server(
            self._options.server_id, self._options.host, os.getpid(), __version__
        )
        self.keep_leases()
        self._start_watchdog()
        self._lease_thread = threading.Thread(target=self._lease_loop, name="leases", daemon=True)
        self._lease_thread.start()
        self._thread = threading.Thread(target=self._run, name="scheduler", daemon=True)
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

    def wake(self, _job_id: int | None = None) -> None:
        self._wakeup.set()

    def stop(self, reason: str = "server shutting down") -> None:
        """Stop admitting. In "wait" mode, let running drivers finish (up to the grace
        period); then stop what still runs and hand those jobs back to the queue (their
        attempts end LOST), so another replica, or the next start, runs them again."""
        self._admitting = False
        with self._admit_lock:
            pass  # an admit step under way (a driver exit's) finishes its launches first
        if self._options.shutdown_mode == "wait":
            deadline = time.monotonic() + self._options.shutdown_grace_seconds
            while self.drivers.running() and time.monotonic() < deadline:
                time.sleep(0.2)
        self._stopped.set()
        self._wakeup.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._launcher.shutdown(wait=True)
        self.warm.shutdown()
        self.drivers.shutdown(reason)
        if self._watchdog is not None:
            self._watchdog.send_signal(signal.SIGUSR1)  # drivers are stopped: leave quietly
            try:
                self._watchdog.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._watchdog.kill()
        if self._lease_thread is not None:
            self._lease_thread.join(timeout=10)
        try:
            self._admission.drop_warm(
                [w.id for w in self._admission.warm_drivers(self._options.server_id)]
            )
            self._servers.server_stopped(self._options.server_id)
        except StoreUnavailable as exc:
            log.warning("could not record the stop: %s", exc)

    # ---- the loop ---------------------------------------------------------------------------

    def _run(self) -> None:
        last_step = 0.0
        while not self._stopped.is_set():
            self._wakeup.wait(self._options.tick_seconds)
            # Submissions arrive in bursts: let them gather, so one step admits them together.
            # A freed slot (a driver ended) is used at once.
            # While the running-jobs limit is reached, only a job's end (capacity freed, which
            # cuts the pause short) can start another: arrivals need not be seen at once.
            interval = self._options.full_step_interval if self._full else 0.0
            pause = max(self._options.min_step_interval, interval) - (time.monotonic() - last_step)
            if pause > 0 and not self._capacity_freed.is_set():
                self._capacity_freed.wait(pause)
            self._capacity_freed.clear()
            self._wakeup.clear()
            if self._stopped.is_set():
                break
            last_step = time.monotonic()
            try:
                self.step()
            except StoreUnavailable as exc:
                log.warning("scheduler step skipped: %s", exc)
                time.sleep(1)
            except Exception:
                log.exception("scheduler step failed")
                time.sleep(1)

    def step(self) -> None:
        """One pass: reap lost attempts, apply cancels, admit what fits."""
        now = time.monotonic()
        if now - self._last_reap >= 1.0:
            self._last_reap = now
            self.reap_expired()
            self._admission.reap_warm(self._options.lease_seconds)
        if self._warm_plan.pools and now - self._last_warm_check >= 0.25:
            self._last_warm_check = now
            self.reconcile_warm()
        # Under a burst of submissions steps come every few milliseconds; cancel requests are
        # looked for at most five times a second (a query each).
        if now - self._last_cancel_check >= 0.2:
            self._last_cancel_check = now
            self.apply_cancels()
        if self._admitting:
            with self._admit_lock:
                self.admit()

    def _lease_loop(self) -> None:
        interval = self._options.lease_seconds / 5
        while not self._stopped.wait(interval):
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
        for job_id, attempt in self.drivers.running():
            if (job_id, attempt) not in owned:
                self.drivers.stop(
                    job_id,
                    attempt,
                    AttemptState.LOST,
                    "this server lost its lease; the attempt was taken over",
                )

    def reap_expired(self) -> None:
        """Mark attempts whose host stopped renewing its lease LOST; retry them."""
        for attempt in self._attempts.expired_attempts():
            if (attempt.job_id, attempt.number) in self.drivers.running():
                continue  # ours and alive: the lease renewal was merely late
            self._mark_lost(attempt, "driver host stopped renewing its lease")

    def recover_orphans(self, all_servers: bool) -> int:
        """At start: attempts left active by an earlier run of this server (or, on a store only
        one server can use, by any server) are LOST. Returns how many were found."""
        server = None if all_servers else self._options.server_id
        self._admission.reap_warm(
            self._options.lease_seconds, self._options.server_id if all_servers else None
        )
        orphans = [
            a
            for a in self._attempts.active_attempts(server)
            if (a.job_id, a.number) not in self.drivers.running()
        ]
        for attempt in orphans:
            self._mark_lost(attempt, "server restarted while the driver ran")
        return len(orphans)

    def _mark_lost(self, lost: Attempt, reason: str) -> None:
        job_id, attempt, pid = lost.job_id, lost.number, lost.pid
        # Record the loss first: from then on the old owner can no longer record an outcome
        # for this attempt (fencing), whatever its driver does while being stopped.
        self._attempts.finish_attempt(
            job_id,
            attempt,
            Outcome(AttemptState.LOST, reason),
            self._options.server_id,
            self._options.lost_retry_limit,
        )
        # Its processes on this machine, if any (they carry their own server's id).
        stop_attempt_processes(job_id, attempt, None, 2.0, lost.server_id)
        job = self._jobs.get_job(job_id)
        backend = self._backends.get(job.spec.cluster)
        if backend is not None:
            try:
                backend.cleanup(job_id, attempt)
            except ChidoriError as exc:
                log.warning("cleanup of job %s attempt %s failed: %s", job_id, attempt, exc)
        log.info("job %s attempt %s (pid %s) lost: %s", job_id, attempt, pid, reason)

    def apply_cancels(self) -> None:
        for attempt in self._attempts.cancel_requested_attempts(self._options.server_id):
            if (
                not self.drivers.stop(
                    attempt.job_id, attempt.number, AttemptState.CANCELLED, "cancelled on request"
                )
                and attempt.state is AttemptState.STARTING
            ):
                self._finish(
                    attempt.job_id,
                    attempt.number,
                    Outcome(AttemptState.CANCELLED, "cancelled on request"),
                )

    def admit(self, ending: Ending | None = None) -> int:
        """Admit every waiting job that fits now and launch its driver. Returns how many.
        With an `ending`, record that attempt's end in the same transaction first."""
        now = time.monotonic()
        plan = self._warm_plan
        if any(until > now for until in self._warm_broken_until.values()):
            plan = WarmPlan(
                {c: p for c, p in plan.pools.items() if self._warm_broken_until.get(c, 0) <= now},
                plan.fixed_conf,
            )
        result = self._admission.admit(
            self._options.server_id,
            self._options.host,
            list(self._backends),
            self._options.lease_seconds,
            warm=plan,
            ending=ending,
        )
        # Starting a process and recording it take milliseconds each: do it beside the loop,
        # which goes straight back to admitting.
        claimed_at = time.monotonic()
        self._full = result.full
        for claim in result.claims:
            if claim.warm_driver is not None:
                self.warm.claim(claim.warm_driver)
                self._launcher.submit(self._launch_logged, claim, claimed_at)
            else:
                # Starting a process takes about a millisecond: here, with no hand-off to
                # another thread; recording the start (a write) goes beside the loop.
                self._launch_logged(claim, claimed_at)
        for warm_id, cluster in result.warm_to_start:
            self._launcher.submit(self._start_warm, warm_id, cluster)
        return len(result.claims)

    # ---- warm drivers -----------------------------------------------------------------------

    def _start_warm(self, warm_id: str, cluster: str) -> None:
        try:
            command = self._backends[cluster].warm_command(self.warm.control_dir(warm_id))
            pid = self.warm.start(warm_id, cluster, command)
        except (ChidoriError, OSError) as exc:
            log.error("could not start a warm driver for cluster %s: %s", cluster, exc)
            self._warm_broken_until[cluster] = time.monotonic() + 60
            self._admission.drop_warm([warm_id])
            return
        self._admission.set_warm_state(warm_id, "starting", pid)

    def _warm_gone(self, warm_id: str) -> None:
        self._admission.drop_warm([warm_id])
        self._capacity_freed.set()
        self._wakeup.set()

    def reconcile_warm(self) -> None:
        """Bring this server's warm processes in line with the store: mark ready ones idle,
        stop the ones being retired (or whose reservation is gone), forget rows whose process
        is gone."""
        local = self.warm.ids()
        rows = self._admission.warm_drivers(self._options.server_id)
        recorded = {row.id for row in rows}
        gone: list[str] = []
        for row in rows:
            if row.id not in local:
                # Rows are written before their process starts: give that a moment.
                age = (self._db.now() - row.created_at).total_seconds()
                if row.state != "starting" or age > 30:
                    gone.append(row.id)
            elif row.state == "retiring":
                self.warm.stop(row.id)
            elif (
                row.state == "starting"
                and self.warm.is_ready(row.id)
                and self._admission.set_warm_state(row.id, "idle")
            ):
                log.info("warm driver %s for cluster %s is ready", row.id, row.cluster)
                self._wakeup.set()
        for warm_id in local - recorded:
            self.warm.stop(warm_id)
        if gone:
            self._admission.drop_warm(gone)

    def _launch_logged(self, claim: Claim, claimed_at: float | None = None) -> None:
        try:
            self.launch(claim, claimed_at)
        except Exception:
            log.exception("launching job %s failed", claim.job.id)

    def _still_ours(self, claim: Claim, claimed_at: float | None) -> bool:
        """Whether the claim may still be started here. Right after the claim it may; once a
        good part of the lease has gone by (this server was frozen, or starved), another
        replica may have found the attempt expired and run the job again: ask the store."""
        if claimed_at is None or time.monotonic() - claimed_at < self._options.lease_seconds / 3:
            return True
        for attempt in self._jobs.list_attempts(claim.job.id):
            if attempt.number == claim.attempt:
                return (
                    attempt.state is AttemptState.STARTING
                    and attempt.server_id == self._options.server_id
                )
        return False

    def _request(self, claim: Claim, work_dir: Path) -> LaunchRequest:
        inputs = work_dir / ".inputs"

        def resolve(reference: str, field: str) -> str:
            # Uploads live in CHIDORI_HOME, which no job can see: each attempt gets its own
            # links to the ones it uses, in its working folder.
            return self._artifacts.stage(self._artifacts.resolve(reference, field), inputs)

        return LaunchRequest(claim.job, claim.attempt, work_dir, resolve)

    def _pause_for_tests(self, job_id: int) -> None:
        marker = self._options.heartbeat_file.parent / f"before-spawn-{job_id}"
        marker.touch()
        time.sleep(self._options.pause_before_spawn)

    def launch(self, claim: Claim, claimed_at: float | None = None) -> None:
        """Start the claim's driver (a cold one, or hand it to its warm driver). The start is
        recorded by a launcher thread for cold starts, before returning for warm ones. Any
        error before the driver runs fails the attempt with the reason (its slot is freed)."""
        job, attempt = claim.job, claim.attempt
        backend = self._backends[job.spec.cluster]
        work_dir = self._options.work_dir / str(job.id) / f"attempt-{attempt}"
        request = self._request(claim, work_dir)
        try:
            if self._options.pause_before_spawn:
                self._pause_for_tests(job.id)
            if not self._still_ours(claim, claimed_at):
                log.warning(
                    "job %s attempt %s was taken over while this server was held up: not started",
                    job.id,
                    attempt,
                )
                return
            if claim.warm_driver is not None and self._launch_warm(
                claim, self._request(claim, self.warm.job_dir(claim.warm_driver))
            ):
                return
            work_dir.mkdir(parents=True, exist_ok=True)
            command = backend.driver_command(request)
            pid, log_path = self.drivers.start(
                job.id, attempt, command, job.spec.timeout, job.spec.kind, job.owner
            )
        except ChidoriError as exc:
            self._fail_start(job.id, attempt, exc.message)
            return
        except (OSError, ValueError) as exc:
            self._fail_start(job.id, attempt, str(exc))
            return
        except Exception as exc:
            log.exception("starting job %s attempt %s failed", job.id, attempt)
            self._fail_start(job.id, attempt, f"{type(exc).__name__}: {exc}")
            return
        # A plain Python job needs no Spark session: it can run as soon as it has started.
        self._launcher.submit(
            self._record_start_logged, job.id, attempt, pid, log_path, job.spec.kind == "python"
        )

    def _fail_start(self, job_id: int, attempt: int, why: str) -> None:
        self._finish(
            job_id, attempt, Outcome(AttemptState.FAILED, f"could not start the driver: {why}")
        )
        # Its reservation is free again: the loop admits the next job (recorded ends do not
        # wake it by themselves).
        self._capacity_freed.set()
        self._wakeup.set()

    def _record_start_logged(
        self, job_id: int, attempt: int, pid: int, log_path: Path, ready: bool
    ) -> None:
        try:
            self._record_start(job_id, attempt, pid, log_path, ready)
        except Exception:
            log.exception("recording the start of job %s failed", job_id)

    def _record_start(
        self, job_id: int, attempt: int, pid: int, log_path: Path, ready: bool
    ) -> None:
        """Record that the attempt's driver runs; only then may its end be recorded. If the
        attempt is no longer this server's (another replica took it over), stop the driver at
        once: the job runs elsewhere."""
        recorded = False
        try:
            recorded = self._attempts.mark_running(
                job_id, attempt, pid, str(log_path), self._options.server_id, ready=ready
            )
        finally:
            self.drivers.start_recorded(job_id, attempt)
            if not recorded:
                self.drivers.stop(
                    job_id, attempt, AttemptState.LOST, "the attempt was taken over before it ran"
                )

    def _launch_warm(self, claim: Claim, request: LaunchRequest) -> bool:
        """Hand the attempt to its warm driver. False (and the start recorded as cold, with
        why) when the driver refuses it: the caller starts a cold one. Raises InvalidRequest
        when the spec names files that cannot be used."""
        job, attempt = claim.job, claim.attempt
        assert claim.warm_driver is not None
        payload = self._backends[job.spec.cluster].warm_job(request)
        try:
            handover = self.warm.hand_over(
                claim.warm_driver, payload, log_path_for(self._log_dir, job.id, attempt)
            )
        except Refused as exc:
            log.info("job %s starts cold: warm driver %s: %s", job.id, claim.warm_driver, exc)
            self._attempts.set_start(job.id, attempt, "cold", f"the warm driver refused it: {exc}")
            return False
        self.drivers.adopt(job.id, attempt, handover.process, handover.log_path, job.spec.timeout)
        self._record_start(job.id, attempt, handover.process.pid, handover.log_path, ready=True)
        return True

    # ---- callbacks from the driver host -----------------------------------------------------

    def _finish(self, job_id: int, attempt: int, outcome: Outcome) -> None:
        self._attempts.finish_attempt(
            job_id, attempt, outcome, self._options.server_id, self._options.lost_retry_limit
        )

    def _driver_exited(self, job_id: int, attempt: int, outcome: Outcome) -> None:
        ending = Ending(
            job_id, attempt, outcome, self._options.server_id, self._options.lost_retry_limit
        )
        # Record the end and use the freed capacity from this thread, in one transaction. An
        # admit step under way (the loop's, or another exit's) takes milliseconds: waiting for
        # it costs less than a transaction of its own for the end plus a step of the loop.
        if self._admit_lock.acquire(timeout=_EXIT_ADMIT_WAIT_SECONDS):
            try:
                if self._admitting:
                    self.admit(ending)
                    return
            except Exception as exc:
                # Recorded below instead (a second record of an end already committed is
                # refused by the store, so nothing is recorded twice).
                log.warning("recording the end of job %s and admitting failed: %s", job_id, exc)
            finally:
                self._admit_lock.release()
        for delay in (0.0, 0.5, 1, 2, 4, 8):
            time.sleep(delay)
            try:
                self._finish(job_id, attempt, outcome)
                break
            except StoreUnavailable as exc:
                log.warning("recording the end of job %s failed, retrying: %s", job_id, exc)
        self._capacity_freed.set()
        self._wakeup.set()

    def _app_id_found(self, job_id: int, attempt: int, app_id: str) -> None:
        self._attempts.set_app_id(job_id, attempt, app_id, self._options.server_id)
