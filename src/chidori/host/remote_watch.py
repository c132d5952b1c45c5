"""Remote runs: the attempts of remote clusters (Livy, Databricks, ...) this replica holds,
submitted, watched and ended by one small step, safe to re-run.

The step reads from the store which remote attempts this server holds (its claims, and the
ones it adopted when their server stopped renewing the lease), and for each that is due:
submits it when it has no run yet (with the attempt's idempotency key, so a second
submission finds the first run), stores the run id at once, then polls the run's state,
copies new driver log lines into the attempt's log, records the application id and the
start, stops the run on a cancel request or a timeout, and records the end. A quota refusal
by the service puts the job back to waiting, with backoff.

A replica that adopts an attempt writes its log again from the service's first line: the
lines are the service's and written alike, so the copy in shared storage goes on from where
the lost replica's stopped (`LogShipper.resume`).

The leases of these attempts are renewed with all of this server's (`leases`); nothing here
runs on this machine, so a shutdown leaves the runs going for another replica to adopt.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from chidori.backends.remote import (
    QuotaRefused,
    RemoteBackend,
    RemoteState,
    RemoteStatus,
    RemoteSubmission,
    RemoteUnavailable,
    idempotency_key,
)
from chidori.domain.errors import ChidoriError, StoreUnavailable
from chidori.domain.records import Attempt, Claim, Job, Outcome
from chidori.domain.states import AttemptState
from chidori.host.driver_host import log_path_for
from chidori.observe.logs import job_context
from chidori.storage.logship import LogShipper
from chidori.store import AttemptRepository, JobRepository
from chidori.store.remote_runs import RemoteAttempt, RemoteRunStore

log = logging.getLogger(__name__)

EndCallback = Callable[[int, int, Outcome], None]
_MAX_FAILURES = 30  # calls in a row the service did not answer before the attempt fails
_MAX_BACKOFF = 30.0


@dataclass
class _Run:
    job: Job
    attempt: int
    log_path: Path
    run_id: str | None = None
    url: str | None = None  # the run's page at the service, as stored on the attempt
    app_id: str | None = None
    running: bool = False
    log_next: int = 0  # the service's next log line to copy
    due: float = 0.0  # monotonic time of its next turn
    failures: int = 0
    maybe_submitted: bool = False  # look for an earlier submission before submitting


class RemoteWatch:
    def __init__(
        self,
        backends: Mapping[str, RemoteBackend],
        runs: RemoteRunStore,
        jobs: JobRepository,
        attempts: AttemptRepository,
        on_end: EndCallback,
        server_id: str,
        host: str,
        lease_seconds: float,
        log_dir: Path,
        log_shipper: LogShipper | None = None,
    ) -> None:
        """`on_end` records an attempt's end (and frees its slot) as this server."""
        self._backends = backends
        self._runs = runs
        self._jobs = jobs
        self._attempts = attempts
        self._on_end = on_end
        self._server_id = server_id
        self._host = host
        self._lease_seconds = lease_seconds
        self._log_dir = log_dir
        self._shipper = log_shipper
        self._watched: dict[tuple[int, int], _Run] = {}  # its claims and adoptions
        self._lock = threading.Lock()
        self._wakeup = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def clusters(self) -> list[str]:
        return list(self._backends)

    def handles(self, cluster: str) -> bool:
        return cluster in self._backends

    def watching(self, job_id: int, attempt: int) -> bool:
        """Whether this replica submits or watches that attempt (cancels are its own)."""
        with self._lock:
            return (job_id, attempt) in self._watched

    # ---- what the scheduler hands over -----------------------------------------------------

    def take(self, claim: Claim) -> None:
        """A claim the admit step just made on a remote cluster: submitted at the next step."""
        with self._lock:
            key = (claim.job.id, claim.attempt)
            self._watched.setdefault(key, self._new_run(claim.job, claim.attempt))
        self._wakeup.set()

    def adopt(self, attempt: Attempt, reason: str, expired_only: bool = True) -> bool:
        """Take over a remote attempt whose server is gone instead of losing it: its run goes
        on at the service. False when the attempt is not a remote one (or someone else took
        it first)."""
        try:
            cluster = self._jobs.get_job(attempt.job_id).spec.cluster
        except ChidoriError:
            return False
        if cluster not in self._backends:
            return False
        adopted = self._runs.adopt(
            attempt, self._server_id, self._host, self._lease_seconds, reason, expired_only
        )
        if adopted:
            log.info(
                "job %s attempt %s adopted from %s (run %s)",
                attempt.job_id, attempt.number, attempt.server_id, attempt.remote_run_id,
            )  # fmt: skip
            self._wakeup.set()
        return True  # adopted here, or by another replica: either way not lost

    # ---- the thread -------------------------------------------------------------------------

    def start(self) -> None:
        if not self._backends:
            return
        self._thread = threading.Thread(target=self._loop, name="remote-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._wakeup.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _interval(self) -> float:
        return min(
            (b.cluster.remote.poll_seconds for b in self._backends.values() if b.cluster.remote),
            default=2.0,
        )

    def _loop(self) -> None:
        while not self._stopped.is_set():
            self._wakeup.wait(self._interval())
            self._wakeup.clear()
            if self._stopped.is_set():
                return
            try:
                self.step()
            except StoreUnavailable as exc:
                log.warning("remote runs step skipped: %s", exc)
            except Exception:
                log.exception("remote runs step failed")

    # ---- the step ---------------------------------------------------------------------------

    def step(self) -> None:
        """One pass over the remote attempts this server holds."""
        held = self._runs.watched(self._server_id, self.clusters)
        current = {(r.attempt.job_id, r.attempt.number) for r in held}
        with self._lock:
            for key in list(self._watched):
                if key not in current:
                    del self._watched[key]  # it ended, or another replica holds it now
        now = time.monotonic()
        for remote in held:
            key = (remote.attempt.job_id, remote.attempt.number)
            with self._lock:
                run = self._watched.get(key)
            if run is None:
                run = self._resume(remote)
                with self._lock:
                    self._watched[key] = run
            if run.due > now and not remote.cancel_requested:
                continue
            with job_context(run.job.id, run.attempt):
                self._turn(run, remote)

    def _new_run(self, job: Job, attempt: int) -> _Run:
        return _Run(job, attempt, log_path_for(self._log_dir, job.id, attempt))

    def _resume(self, remote: RemoteAttempt) -> _Run:
        """An attempt this process did not claim: adopted from a lost replica, or left by an
        earlier run of this server. Its log is written again from the service's first line."""
        attempt = remote.attempt
        run = self._new_run(self._jobs.get_job(attempt.job_id), attempt.number)
        run.run_id = attempt.remote_run_id
        run.url = attempt.remote_url
        run.app_id = attempt.spark_app_id
        run.running = attempt.state is AttemptState.RUNNING
        run.maybe_submitted = True
        run.log_path.parent.mkdir(parents=True, exist_ok=True)
        run.log_path.write_bytes(b"")
        if self._shipper is not None:
            self._shipper.resume(run.job.id, run.attempt, run.log_path)
        if run.run_id is not None and attempt.log_path != str(run.log_path):
            self._runs.set_log_path(run.job.id, run.attempt, self._server_id, str(run.log_path))
        return run

    def _backend(self, run: _Run) -> RemoteBackend:
        return self._backends[run.job.spec.cluster]

    def _turn(self, run: _Run, remote: RemoteAttempt) -> None:
        backend = self._backend(run)
        try:
            if remote.cancel_requested:
                cancelled = Outcome(AttemptState.CANCELLED, "cancelled on request")
                if run.run_id is None:
                    self._end(run, cancelled)  # never submitted
                else:
                    self._stop(run, backend, cancelled)
            elif run.run_id is None:
                self._submit(run, backend)
            elif self._timed_out(run, remote.attempt):
                why = f"timed out after {run.job.spec.timeout:g} s"
                self._stop(run, backend, Outcome(AttemptState.FAILED, why))
            else:
                self._poll(run, backend)
            run.failures = 0
            run.due = time.monotonic() + self._poll_seconds(backend)
        except QuotaRefused as exc:
            log.info("job %s: %s", run.job.id, exc.message)
            self._end(run, Outcome(AttemptState.FAILED, exc.message, deferred=True))
        except RemoteUnavailable as exc:
            run.failures += 1
            if run.failures >= _MAX_FAILURES:
                why = f"{exc.message} ({run.failures} times in a row)"
                self._end(run, Outcome(AttemptState.FAILED, why))
                return
            log.warning("job %s: %s (try %d)", run.job.id, exc.message, run.failures)
            backoff = min(_MAX_BACKOFF, self._poll_seconds(backend) * 2**run.failures)
            run.due = time.monotonic() + backoff
        except StoreUnavailable:
            raise
        except ChidoriError as exc:
            self._end(run, Outcome(AttemptState.FAILED, exc.message))

    def _poll_seconds(self, backend: RemoteBackend) -> float:
        return backend.cluster.remote.poll_seconds if backend.cluster.remote else 2.0

    def _submit(self, run: _Run, backend: RemoteBackend) -> None:
        submission = RemoteSubmission(
            run.job, run.attempt, idempotency_key(run.job, run.attempt), {}, run.maybe_submitted
        )
        run.maybe_submitted = True  # whatever happens now, a run may exist from here on
        submitted = backend.submit(submission)
        run.log_path.parent.mkdir(parents=True, exist_ok=True)
        run.log_path.touch()
        if not self._runs.record_submitted(
            run.job.id, run.attempt, submitted.run_id, _web_url(submitted.url), str(run.log_path),
            self._server_id, backend.cluster.name,
        ):  # fmt: skip
            # Taken over (or ended) meanwhile: whoever holds it finds the run by its key.
            log.warning("job %s attempt %s: not ours any more", run.job.id, run.attempt)
            return
        run.run_id = submitted.run_id
        run.url = _web_url(submitted.url)
        if self._shipper is not None:
            self._shipper.track(run.job.id, run.attempt, run.log_path)
        log.info("job %s attempt %s submitted as run %s", run.job.id, run.attempt, run.run_id)

    def _poll(self, run: _Run, backend: RemoteBackend) -> None:
        assert run.run_id is not None
        status = backend.status(run.run_id)
        if status.app_id and status.app_id != run.app_id:
            run.app_id = status.app_id
            self._attempts.set_app_id(run.job.id, run.attempt, status.app_id, self._server_id)
        better = _web_url(status.url)
        if better and better != run.url:
            run.url = better
            self._runs.set_remote_url(run.job.id, run.attempt, self._server_id, better)
        if not run.running and status.state is not RemoteState.PENDING:
            run.running = True
            detail = f"run {run.run_id} is {status.service_state} on {backend.cluster.name}"
            self._runs.record_running(run.job.id, run.attempt, self._server_id, detail)
        self._copy_logs(run, backend, final=status.state.terminal)
        if status.state.terminal:
            self._end(run, _outcome(run, status, backend.cluster.name))

    def _stop(self, run: _Run, backend: RemoteBackend, outcome: Outcome) -> None:
        assert run.run_id is not None
        backend.cancel(run.run_id)
        try:
            self._copy_logs(run, backend, final=True)
        except RemoteUnavailable as exc:
            log.warning("job %s: the last log lines were not copied: %s", run.job.id, exc)
        self._end(run, outcome)

    def _timed_out(self, run: _Run, attempt: Attempt) -> bool:
        timeout = run.job.spec.timeout
        if not timeout:
            return False
        started = attempt.started_at
        if started.tzinfo is None:
            started = started.replace(tzinfo=UTC)
        return (datetime.now(UTC) - started).total_seconds() > timeout

    def _copy_logs(self, run: _Run, backend: RemoteBackend, final: bool) -> None:
        assert run.run_id is not None
        while True:
            page = backend.logs(run.run_id, run.log_next, final)
            if page.lines:
                with open(run.log_path, "a", encoding="utf-8") as handle:
                    handle.write("".join(f"{line}\n" for line in page.lines))
            moved = page.next_start > run.log_next
            run.log_next = page.next_start
            if not moved or page.total is None or run.log_next >= page.total:
                return

    def _end(self, run: _Run, outcome: Outcome) -> None:
        with self._lock:
            self._watched.pop((run.job.id, run.attempt), None)
        if self._shipper is not None:
            self._shipper.finish(run.job.id, run.attempt, run.log_path)
        log.info("job %s attempt %s ended %s", run.job.id, run.attempt, outcome.state.value)
        self._on_end(run.job.id, run.attempt, outcome)
        if run.run_id is not None:
            try:
                self._backend(run).cleanup(run.run_id)
            except ChidoriError as exc:
                log.warning("cleanup of run %s failed: %s", run.run_id, exc)


def _web_url(url: str | None) -> str | None:
    """A page the UI may link to: http(s) only (the service chose it, not Chidori)."""
    if url and urlsplit(url).scheme in ("http", "https"):
        return url
    return None


def _outcome(run: _Run, status: RemoteStatus, cluster: str) -> Outcome:
    where = f"run {run.run_id} on {cluster} ended {status.service_state}"
    if status.state is RemoteState.SUCCEEDED:
        return Outcome(AttemptState.SUCCEEDED, None, 0)
    if status.state is RemoteState.CANCELLED:
        return Outcome(AttemptState.CANCELLED, f"{where} (stopped at the service)")
    return Outcome(AttemptState.FAILED, f"{where}: {status.message}" if status.message else where)
