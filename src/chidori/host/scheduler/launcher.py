"""Launching: a claim (a job the admit step gave this server, with its new attempt) becomes
a running driver, and its start is recorded.

A cold claim's process is started by the admitting thread itself (about a millisecond) and
its start recorded beside it, on the executor; a claim handed to a warm driver goes to the
executor whole. A claim that waited too long (this server was frozen) is started only if the
store still says it is ours. Any error before the driver runs fails the attempt with the
reason and frees its slot.

The start-recorded handshake is owned here: the driver host reports no driver's end before
it is told the driver's start is recorded (`DriverHost.start_recorded`, its side), because
the start carries the pid and the log path. `_record_start` always tells it, recorded or
not, and stops the driver when the store refused the start (the attempt was taken over).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from concurrent.futures import Executor
from dataclasses import replace
from pathlib import Path

from chidori.backends.base import HostedBackend, LaunchRequest
from chidori.domain.errors import ChidoriError
from chidori.domain.records import Claim, Outcome
from chidori.domain.states import AttemptState
from chidori.host.driver_host import DriverHost, log_path_for
from chidori.host.environments.jobs import EnvironmentNotReady, JobEnvironments
from chidori.host.scheduler.common import SCHEDULER_LOGGER, Ends, SchedulerOptions, Signals
from chidori.host.warm_pool import Refused, WarmPool
from chidori.observe.logs import job_context
from chidori.observe.metrics_jobs import AttemptTimings
from chidori.storage.artifacts import ArtifactStore
from chidori.store import AttemptRepository, JobRepository

log = logging.getLogger(SCHEDULER_LOGGER)


class Launcher:
    def __init__(
        self,
        jobs: JobRepository,
        attempts: AttemptRepository,
        backends: Mapping[str, HostedBackend],
        artifacts: ArtifactStore,
        drivers: DriverHost,
        warm: WarmPool,
        executor: Executor,
        ends: Ends,
        signals: Signals,
        options: SchedulerOptions,
        driver_log_dir: Path,
        timings: AttemptTimings,
        environments: JobEnvironments | None = None,
    ) -> None:
        """`executor`: where starts are recorded and warm hand-overs run, beside the loop.
        `environments`: the jobs' Python environments (None: jobs with requirements fail)."""
        self._environments = environments
        self._timings = timings
        self._jobs = jobs
        self._attempts = attempts
        self._backends = backends
        self._artifacts = artifacts
        self._drivers = drivers
        self._warm = warm
        self._executor = executor
        self._ends = ends
        self._signals = signals
        self._options = options
        self._log_dir = driver_log_dir

    def take(self, claim: Claim, claimed_at: float) -> None:
        """Launch a claim the admit step just made (`claimed_at`: when, monotonic)."""
        if claim.warm_driver is not None:
            self._warm.claim(claim.warm_driver)
            self._executor.submit(self._launch_logged, claim, claimed_at)
        else:
            # Starting a process takes about a millisecond: here, with no hand-off to
            # another thread; recording the start (a write) goes beside the loop.
            self._launch_logged(claim, claimed_at)

    def _launch_logged(self, claim: Claim, claimed_at: float | None = None) -> None:
        with job_context(claim.job.id, claim.attempt):
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
                claim, self._request(claim, self._warm.job_dir(claim.warm_driver))
            ):
                return
            work_dir.mkdir(parents=True, exist_ok=True)
            if job.spec.needs_environment:
                request = self._with_environment(request, backend.ships_environments())
            command = backend.driver_command(request)
            pid, log_path = self._drivers.start(
                job.id, attempt, command, job.spec.timeout, job.spec.kind, job.owner
            )
        except ChidoriError as exc:
            self._fail_start(job.id, attempt, exc.message)
            return
        except (OSError, ValueError, EnvironmentNotReady) as exc:
            self._fail_start(job.id, attempt, str(exc))
            return
        except Exception as exc:
            log.exception("starting job %s attempt %s failed", job.id, attempt)
            self._fail_start(job.id, attempt, f"{type(exc).__name__}: {exc}")
            return
        # A plain Python job needs no Spark session: it can run as soon as it has started.
        self._timings.started(job.id, attempt, "cold", ready=job.spec.kind == "python")
        self._executor.submit(
            self._record_start_logged, job.id, attempt, pid, log_path, job.spec.kind == "python"
        )

    def _with_environment(self, request: LaunchRequest, ship: bool) -> LaunchRequest:
        """`request` with the job's environment on this host (found, or built from its
        lock; its phase written first into the attempt's log), packed too when `ship`."""
        if self._environments is None:
            raise EnvironmentNotReady("this server prepares no Python environments")
        job_id, attempt = request.job.id, request.attempt
        site = self._environments.site_for(job_id, log_path_for(self._log_dir, job_id, attempt))
        archive = self._environments.archive_of(site) if ship else None
        return replace(request, python_path=site, python_archive=archive)

    def _fail_start(self, job_id: int, attempt: int, why: str) -> None:
        self._timings.ended(job_id, attempt, AttemptState.FAILED.value)
        self._ends.finish(
            job_id, attempt, Outcome(AttemptState.FAILED, f"could not start the driver: {why}")
        )
        # Its reservation is free again: the loop admits the next job (recorded ends do not
        # wake it by themselves).
        self._signals.freed()

    def _record_start_logged(
        self, job_id: int, attempt: int, pid: int, log_path: Path, ready: bool
    ) -> None:
        with job_context(job_id, attempt):
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
            self._drivers.start_recorded(job_id, attempt)
            if not recorded:
                self._drivers.stop(
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
            handover = self._warm.hand_over(
                claim.warm_driver, payload, log_path_for(self._log_dir, job.id, attempt)
            )
        except Refused as exc:
            log.info("job %s starts cold: warm driver %s: %s", job.id, claim.warm_driver, exc)
            self._attempts.set_start(job.id, attempt, "cold", f"the warm driver refused it: {exc}")
            return False
        self._drivers.adopt(job.id, attempt, handover.process, handover.log_path, job.spec.timeout)
        self._timings.started(job.id, attempt, "warm", ready=True)
        self._record_start(job.id, attempt, handover.process.pid, handover.log_path, ready=True)
        return True
