"""The scheduler: admits queued jobs, launches their drivers, reacts to cancels and losses.

It wakes on events (a submission, a finished driver, a cancel) and also every `tick` seconds,
so changes made by other replicas are seen too. Every step is small, idempotent and reads the
truth from the store, so it is safe to re-run on any replica at any time.

This module is the composition: it builds the parts (`leases`, `recovery`, `cancels`,
`launcher`, `warm_reconciler`) around one driver host and one warm pool, runs the loop
thread and its `step()`, owns the admit step (one at a time in this process) and hands its
claims to the launcher, receives the driver host's and the warm pool's callbacks, and stops
everything in order.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from chidori.backends.base import HostedBackend
from chidori.backends.remote import RemoteBackend
from chidori.domain.errors import StoreUnavailable
from chidori.domain.nodes import NodeSource
from chidori.domain.records import Ending, Outcome
from chidori.host.driver_host import DriverHost
from chidori.host.environments.jobs import JobEnvironments
from chidori.host.isolation import Isolation
from chidori.host.remote_watch import RemoteWatch
from chidori.host.scheduler.cancels import Cancels
from chidori.host.scheduler.common import SCHEDULER_LOGGER, Ends, SchedulerOptions, Signals
from chidori.host.scheduler.launcher import Launcher
from chidori.host.scheduler.leases import Leases
from chidori.host.scheduler.recovery import Recovery
from chidori.host.scheduler.warm_reconciler import WarmReconciler
from chidori.host.spark_progress import SparkProgressCollector
from chidori.host.warm_pool import WarmPool
from chidori.observe.logs import job_context
from chidori.observe.metrics import Metrics
from chidori.observe.metrics_jobs import AttemptTimings
from chidori.storage.artifacts import ArtifactStore
from chidori.storage.logship import LogShipper
from chidori.store import Repositories
from chidori.store.admission import AdmissionStore
from chidori.store.remote_runs import RemoteRunStore

log = logging.getLogger(SCHEDULER_LOGGER)
# How long a driver's exit waits for an admit step under way before recording its end alone.
_EXIT_ADMIT_WAIT_SECONDS = 2.0


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
        metrics: Metrics | None = None,
        progress: SparkProgressCollector | None = None,
        remote_backends: Mapping[str, RemoteBackend] | None = None,
        environments: JobEnvironments | None = None,
    ) -> None:
        """`remote_backends`: the remote clusters (Livy, Databricks, ...), whose runs are
        submitted and watched by `remote` instead of hosted here. `environments`: where
        launched drivers find their jobs' Python environments."""
        self._admission = admission
        self.metrics = metrics or Metrics()
        self._timings = AttemptTimings(self.metrics)
        self._backends = backends
        self._options = options
        self._signals = Signals()
        self._admitting = True
        # One server per SQLite file: a driver's exit may wait for an admit step under way.
        # Replicas must not: the one whose drivers end would then take every freed slot.
        self._exit_wait = _EXIT_ADMIT_WAIT_SECONDS if store.db.dialect == "sqlite" else 0.0
        self._thread: threading.Thread | None = None
        self._last_reap = 0.0
        # Starts recorded, warm hand-overs and warm drivers started: beside the loop.
        self._executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="launch")
        fence_dir = options.heartbeat_file.parent / f"fenced-{options.server_id}"
        self.drivers = DriverHost(
            driver_log_dir,
            on_exit=self._driver_exited,
            on_app_id=self._app_id_found,
            server_id=options.server_id,
            fence_dir=fence_dir,
            isolation=isolation,
            grace_seconds=grace_seconds,
            log_shipper=log_shipper,
            progress=progress,
        )
        self.warm = WarmPool(
            options.work_dir, driver_log_dir, options.server_id, self._warm_gone, isolation
        )
        self._attempts = store.attempts
        self._ends = Ends(store.attempts, options)
        self.remote = RemoteWatch(
            remote_backends or {},
            RemoteRunStore(store.db),
            store.jobs,
            store.attempts,
            self._remote_ended,
            options.server_id,
            options.host,
            options.lease_seconds,
            driver_log_dir,
            log_shipper,
        )
        self.leases = Leases(
            store.servers, self.drivers, options, self._signals, grace_seconds, fence_dir
        )
        self.recovery = Recovery(
            store.jobs,
            store.attempts,
            admission,
            backends,
            self.drivers,
            self._ends,
            options,
            self.metrics.attempts_lost.inc,
            adopt=self.remote.adopt,
        )
        self.cancels = Cancels(
            store.attempts, self.drivers, self._ends, options, skip=self.remote.watching
        )
        self.warm_reconciler = WarmReconciler(
            store.db, admission, backends, self.warm, self._executor, self._signals, options
        )
        self.launcher = Launcher(
            store.jobs,
            store.attempts,
            backends,
            artifacts,
            self.drivers,
            self.warm,
            self._executor,
            self._ends,
            self._signals,
            options,
            driver_log_dir,
            self._timings,
            environments,
        )
        self.metrics.watch_leases(lambda: len(self.drivers.running()))
        self._nodes: NodeSource | None = None
        self._last_warm_check = 0.0
        self._last_cancel_check = 0.0
        self._full = False
        # One admit step at a time in this process (the loop's, or a driver exit's).
        self._admit_lock = threading.Lock()

    # ---- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        self.leases.start()
        self.remote.start()
        self._thread = threading.Thread(target=self._run, name="scheduler", daemon=True)
        self._thread.start()

    def watch_nodes(self, source: NodeSource) -> None:
        """Admit jobs of node-aware clusters (Kubernetes) only where their executors fit."""
        self._nodes = source

    def wake(self, _job_id: int | None = None) -> None:
        self._signals.wake()

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
        self._signals.stopped.set()
        self._signals.wakeup.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        # Remote runs go on at their service: their leases lapse and another replica (or
        # this server's next start) adopts them.
        self.remote.stop()
        self._executor.shutdown(wait=True)
        self.warm.shutdown()
        self.drivers.shutdown(reason)
        self.leases.stop_watchdog()
        self.leases.join()
        try:
            self.warm_reconciler.drop_all()
            self.leases.server_stopped()
        except StoreUnavailable as exc:
            log.warning("could not record the stop: %s", exc)

    # ---- the parts' steps, as before the split ------------------------------------------------

    def keep_leases(self) -> None:
        self.leases.keep_leases()

    def reap_expired(self) -> None:
        self.recovery.reap_expired()

    def recover_orphans(self, all_servers: bool) -> int:
        """At start: attempts left active by an earlier run of this server (or, on a store only
        one server can use, by any server) are LOST. Returns how many were found."""
        return self.recovery.recover_orphans(all_servers)

    def apply_cancels(self) -> None:
        self.cancels.apply_cancels()

    def reconcile_warm(self) -> None:
        self.warm_reconciler.reconcile_warm()

    # ---- the loop ---------------------------------------------------------------------------

    def _run(self) -> None:
        signals = self._signals
        last_step = 0.0
        while not signals.stopped.is_set():
            signals.wakeup.wait(self._options.tick_seconds)
            # Submissions arrive in bursts: let them gather, so one step admits them together.
            # A freed slot (a driver ended) is used at once.
            # While the running-jobs limit is reached, only a job's end (capacity freed, which
            # cuts the pause short) can start another: arrivals need not be seen at once.
            interval = self._options.full_step_interval if self._full else 0.0
            pause = max(self._options.min_step_interval, interval) - (time.monotonic() - last_step)
            if pause > 0 and not signals.capacity_freed.is_set():
                signals.capacity_freed.wait(pause)
            signals.capacity_freed.clear()
            signals.wakeup.clear()
            if signals.stopped.is_set():
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
            self.recovery.reap_expired()
            self._admission.reap_warm(self._options.lease_seconds)
        if self.warm_reconciler.has_pools and now - self._last_warm_check >= 0.25:
            self._last_warm_check = now
            self.warm_reconciler.reconcile_warm()
        # Under a burst of submissions steps come every few milliseconds; cancel requests are
        # looked for at most five times a second (a query each).
        if now - self._last_cancel_check >= 0.2:
            self._last_cancel_check = now
            self.cancels.apply_cancels()
        if self._admitting:
            with self._admit_lock:
                self.admit()

    def admit(self, ending: Ending | None = None) -> int:
        """Admit every waiting job that fits now and launch its driver. Returns how many.
        With an `ending`, record that attempt's end in the same transaction first."""
        result = self._admission.admit(
            self._options.server_id,
            self._options.host,
            [*self._backends, *self.remote.clusters],
            self._options.lease_seconds,
            warm=self.warm_reconciler.plan(),
            ending=ending,
            nodes=self._nodes,
        )
        # Starting a process and recording it take milliseconds each: do it beside the loop,
        # which goes straight back to admitting.
        claimed_at = time.monotonic()
        self._full = result.full
        self.metrics.count_decisions(len(result.claims), result.new_reasons)
        for claim in result.claims:
            job = claim.job
            self._timings.admitted(
                job.id, claim.attempt, job.spec.queue, job.spec.cluster, job.created_at
            )
            if self.remote.handles(job.spec.cluster):
                self.remote.take(claim)
            else:
                self.launcher.take(claim, claimed_at)
        for warm_id, cluster in result.warm_to_start:
            self.warm_reconciler.start_soon(warm_id, cluster)
        return len(result.claims)

    # ---- callbacks from the driver host and the warm pool -----------------------------------

    def _driver_exited(self, job_id: int, attempt: int, outcome: Outcome) -> None:
        self._timings.ended(job_id, attempt, outcome.state.value)
        log.info("job %s attempt %s ended %s", job_id, attempt, outcome.state.value)
        ending = self._ends.ending(job_id, attempt, outcome)
        # Record the end and use the freed capacity from this thread, in one transaction. On
        # a single server an admit step under way (the loop's, or another exit's) takes
        # milliseconds: waiting for it costs less than a transaction of its own for the end
        # plus a step of the loop. With replicas, a busy step means the end is recorded alone
        # and the slot is left to whichever replica admits next.
        wait = self._exit_wait
        if self._admit_lock.acquire(blocking=wait > 0, timeout=wait if wait > 0 else -1):
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
                self._ends.finish(job_id, attempt, outcome)
                break
            except StoreUnavailable as exc:
                log.warning("recording the end of job %s failed, retrying: %s", job_id, exc)
        self._signals.freed()

    def _remote_ended(self, job_id: int, attempt: int, outcome: Outcome) -> None:
        self._timings.ended(job_id, attempt, outcome.state.value)
        for delay in (0.0, 0.5, 1, 2, 4):
            time.sleep(delay)
            try:
                self._ends.finish(job_id, attempt, outcome)
                break
            except StoreUnavailable as exc:
                log.warning("recording the end of job %s failed, retrying: %s", job_id, exc)
        self._signals.freed()

    def _app_id_found(self, job_id: int, attempt: int, app_id: str) -> None:
        self._timings.ready(job_id, attempt)
        with job_context(job_id, attempt):
            self._attempts.set_app_id(job_id, attempt, app_id, self._options.server_id)

    def _warm_gone(self, warm_id: str) -> None:
        self.warm_reconciler.gone(warm_id)
