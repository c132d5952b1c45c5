"""Job use cases: submit, read, list, cancel, wait, logs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

import anyio.to_thread

from chidori.config import ClusterConfig
from chidori.domain.errors import ChidoriError, FieldError, Forbidden, InvalidRequest, NotFound
from chidori.domain.identity import Principal, Role
from chidori.domain.policy import check_job
from chidori.domain.records import Attempt, Channel, Event, Job, JobQuery, Page
from chidori.domain.spec import BUILT_IN_APPLICATIONS, JobSpec
from chidori.domain.states import JobState
from chidori.domain.submit_command import rerun_spec
from chidori.services.admission import AdmissionService
from chidori.services.identity import Actor, IdentityService
from chidori.services.notify import ChangeNotifier
from chidori.services.ratelimit import RateLimiter
from chidori.storage.artifacts import UPLOAD_SCHEME, ArtifactStore, Upload
from chidori.storage.blobs import BlobStore
from chidori.storage.logfiles import (
    FOLLOW_CHUNK_BYTES,
    FileLog,
    LineIndex,
    LineWindow,
    LogChunk,
    LogReader,
    read_window,
    stream_log,
)
from chidori.storage.logship import SharedLog
from chidori.store import JobRepository, UploadRegistry
from chidori.store.spark_progress import ProgressRepository

_POLL_SECONDS = 1.0
# A follow stream checks again this often that its caller may still read (token revoked,
# user disabled or moved away: the stream ends).
_FOLLOW_RECHECK_SECONDS = 2.0
_FOLLOW_SETTLE_SECONDS = 10.0  # how long a follow waits for a finished log's last copy


class JobService:
    def __init__(
        self,
        jobs: JobRepository,
        uploads: UploadRegistry,
        artifacts: ArtifactStore,
        clusters: Mapping[str, ClusterConfig],
        notifier: ChangeNotifier,
        identity: IdentityService,
        admission: AdmissionService,
        submit_limiter: RateLimiter,
        admins_only: str | None = None,
        blobs: BlobStore | None = None,
        cluster_checks: Mapping[str, Callable[[JobSpec], None]] | None = None,
        progress: ProgressRepository | None = None,
    ) -> None:
        """`admins_only`: why only admins may submit (jobs cannot be isolated), or None.
        `blobs`: the shared storage other replicas copy their drivers' logs into, if any.
        `cluster_checks`: per cluster, what its type refuses of a spec (InvalidRequest).
        `progress`: the jobs' Spark progress records (None: no progress is ever known)."""
        self._cluster_checks = dict(cluster_checks or {})
        self._progress = progress
        self._jobs = jobs
        self._uploads = uploads
        self._blobs = blobs
        self._line_index = LineIndex()
        self._admins_only = admins_only
        self._artifacts = artifacts
        self._clusters = clusters
        self._notifier = notifier
        self._identity = identity
        self._admission = admission
        self._submit_limiter = submit_limiter

    def upload(self, actor: Actor, stream: BinaryIO, filename: str) -> Upload:
        """Database a file a job will use (users and admins only)."""
        actor.principal.require(Role.ADMIN, Role.USER)
        stored = self._artifacts.save(stream, filename)
        # The content is shared on disk; the right to name it in a job is the team's.
        self._uploads.record_upload(stored.uri, actor.name, actor.principal.team, stored.size)
        self._identity.record(actor, "upload", stored.uri, {"size": stored.size})
        return stored

    # ---- submission -------------------------------------------------------------------------

    def submit(
        self,
        actor: Actor,
        spec: JobSpec,
        idempotency_key: str | None = None,
        channel: Channel | None = None,
    ) -> tuple[Job, bool]:
        """Check the caller may submit this, validate what the spec points at, then store the
        job QUEUED. Returns (job, created); created is False when an idempotent retry returned
        the first job. `channel`: the door it came in through, for the doors that act on their
        own jobs only (set by the server, never by the caller)."""
        self.check_submission(actor, spec)
        return self._jobs.create_job(
            spec,
            actor.name,
            team=actor.principal.team,
            idempotency_key=idempotency_key,
            source=actor.source,
            channel=channel,
        )

    def check_submission(self, actor: Actor, spec: JobSpec) -> None:
        """Everything `submit` checks before storing: role, rate, policy, references, limits."""
        actor.principal.require(Role.ADMIN, Role.USER)
        if self._admins_only is not None and actor.principal.role is not Role.ADMIN:
            raise Forbidden(self._admins_only)
        self._submit_limiter.take(actor.name)
        check_job(self._identity.policy(), spec, actor.principal)
        self.check_references(spec, actor.principal)
        self._admission.check_submission(spec)

    def checks_fresh(self, spec: JobSpec | None = None) -> bool:
        """Whether `check_submission` runs now without reading the store (so an event loop
        may call it): not for a `spec` naming uploads (whose team is read from the store)."""
        if spec is not None and any(_is_upload(ref) for _, ref in _references(spec)):
            return False
        return self._identity.policy_fresh() and self._admission.settings_fresh()

    async def submit_async(
        self,
        spec: JobSpec,
        idempotency_key: str | None,
        *,
        authorization: str | None,
        source: str | None,
        authenticate: Callable[[], Actor],
    ) -> tuple[Job, bool]:
        """`submit` for the event loop (`POST /api/v1/jobs`), deciding where the checks run:
        on the loop when everything they read is in memory (the caller's token, the policy,
        limits and queues, each kept for a second), otherwise in one hop to a worker thread,
        which also authenticates the caller (`authenticate`: the edge's own way, a token, a
        proxy header or a UI session). `authorization` and `source`: the caller's header and
        address. The commit is awaited without holding a thread (the group commit batches
        submissions)."""
        principal = self._identity.cached_principal(authorization) if self.checks_fresh() else None
        if principal is not None:
            actor = Actor(principal, source)
            self.check_submission(actor, spec)
        else:
            # anyio's pool, as Starlette's run_in_threadpool (the routes' thread hops) uses.
            actor = await anyio.to_thread.run_sync(self._authenticate_and_check, authenticate, spec)
        return await self._jobs.create_job_async(
            spec,
            actor.name,
            team=actor.principal.team,
            idempotency_key=idempotency_key,
            source=actor.source,
        )

    def _authenticate_and_check(self, authenticate: Callable[[], Actor], spec: JobSpec) -> Actor:
        actor = authenticate()
        self.check_submission(actor, spec)
        return actor

    def check_references(self, spec: JobSpec, principal: Principal) -> None:
        """Raise InvalidRequest naming every field that points at something unusable. An
        upload is usable by whoever stored it, by their team, and by admins: to anyone else
        it answers as an upload that does not exist."""
        errors = []
        if spec.cluster not in self._clusters:
            known = ", ".join(sorted(self._clusters))
            errors.append(("cluster", f"unknown cluster {spec.cluster!r}; known: {known}"))
        elif spec.cluster in self._cluster_checks:
            try:
                self._cluster_checks[spec.cluster](spec)
            except InvalidRequest as exc:
                errors += [(f.field, f.message) for f in exc.fields] or [("spec", exc.message)]
        cluster = self._clusters.get(spec.cluster)
        # A remote cluster's service reads the files it is told (its paths, its storage):
        # nothing is resolved here; its own check (above) refuses what it cannot read.
        remote = cluster is not None and cluster.remote is not None
        for field, ref in [] if remote else _references(spec):
            if (
                _is_upload(ref)
                and not principal.is_admin
                and not self._uploads.upload_known(
                    _without_alias(ref), principal.name, principal.team
                )
            ):
                # The words of a missing upload: another team's uploads are not revealed.
                errors.append((field, f"upload {_without_alias(ref)} not found"))
                continue
            try:
                self._artifacts.resolve(ref, field)
            except InvalidRequest as exc:
                errors += [(f.field, f.message) for f in exc.fields]
        if errors:
            raise InvalidRequest(
                "; ".join(f"{name}: {message}" for name, message in errors),
                [FieldError(name, message) for name, message in errors],
            )

    # ---- reads ------------------------------------------------------------------------------

    def rerun(self, actor: Actor, job_id: int, idempotency_key: str | None = None) -> Job:
        """Submit job `job_id` again as `actor`, labelled with the job it re-runs; every check
        of a new submission applies (role, rate, policy, references, limits). NotFound if
        `actor` may not see the job; InvalidRequest if its spec fails today's checks."""
        original = self.get(actor, job_id)
        job, _created = self.submit(
            actor, rerun_spec(original.spec, original.id), idempotency_key=idempotency_key
        )
        return job

    def get(self, actor: Actor, job_id: int) -> Job:
        """The job, if `actor` may see it; NotFound otherwise (existence is not revealed)."""
        job = self._jobs.get_job(job_id)
        if not actor.principal.can_see(job.owner, job.team):
            raise NotFound(f"job {job_id} not found")
        return job

    def get_unchecked(self, job_id: int) -> Job:
        """The job, without an access check: only for share links, already verified."""
        return self._jobs.get_job(job_id)

    def read_log_unchecked(
        self, job_id: int, attempt: int | None, offset: int | None, tail_lines: int | None
    ) -> LogChunk:
        """A job's log, without an access check: only for share links."""
        with self._open_log(job_id, attempt) as (_, log):
            return read_window(log, offset, tail_lines)

    def search(self, actor: Actor, query: JobQuery) -> Page:
        if not actor.principal.is_admin:
            query = replace(query, visible_to=(actor.name, actor.principal.team))
        return self._jobs.list_jobs(query)

    def events(self, actor: Actor, job_id: int) -> list[Event]:
        self.get(actor, job_id)
        return self._jobs.list_events(job_id)

    def attempts(self, actor: Actor, job_id: int) -> list[Attempt]:
        self.get(actor, job_id)
        return self._jobs.list_attempts(job_id)

    def progress(self, actor: Actor, job_id: int) -> dict[str, Any] | None:
        """The current attempt's whole Spark progress (with its stages), None if none is
        known; NotFound if `actor` may not see the job."""
        self.get(actor, job_id)
        return self.progress_unchecked(job_id)

    def progress_unchecked(self, job_id: int) -> dict[str, Any] | None:
        """As `progress`, without an access check: only for share links, already verified."""
        return self._progress.latest(job_id) if self._progress is not None else None

    def cancel(self, actor: Actor, job_id: int) -> Job:
        self.get(actor, job_id)
        actor.principal.require(Role.ADMIN, Role.USER)
        return self._jobs.request_cancel(job_id, actor.name, actor.source)

    async def wait_for_change(
        self, actor: Actor, job_id: int, state: JobState | None, timeout: float
    ) -> Job:
        """The job as soon as its state differs from `state` (or when `timeout` runs out)."""
        await asyncio.to_thread(self.get, actor, job_id)
        deadline = time.monotonic() + timeout
        while True:
            job = await asyncio.to_thread(self._jobs.get_job, job_id)
            remaining = deadline - time.monotonic()
            if state is None or job.state != state or remaining <= 0:
                return job
            await self._notifier.wait(min(remaining, _POLL_SECONDS))

    # ---- logs -------------------------------------------------------------------------------
    # A log is read from this host's file while it is here (this replica hosted the driver),
    # else from the copies in shared storage (chidori.storage.logship). No answer holds a whole log:
    # windows are capped (chidori.storage.logfiles), downloads and follows stream.

    def _log_attempt(self, job_id: int, attempt: int | None) -> Attempt | None:
        """The attempt whose log is meant (default: the newest that has one)."""
        attempts = self._jobs.list_attempts(job_id)
        if attempt is not None:
            chosen = [a for a in attempts if a.number == attempt]
            if not chosen:
                raise NotFound(f"job {job_id} has no attempt {attempt}")
            attempts = chosen
        with_logs = [a for a in attempts if a.log_path]
        return with_logs[-1] if with_logs else None

    @contextmanager
    def _open_log(self, job_id: int, attempt: int | None) -> Iterator[tuple[str, LogReader | None]]:
        """(a name for the log, the log) for as long as the block runs; None: no log."""
        chosen = self._log_attempt(job_id, attempt)
        if chosen is None or not chosen.log_path:
            yield f"{job_id}", None
            return
        name = f"{job_id}/{chosen.number}"
        local = FileLog.open(Path(chosen.log_path))
        if local is not None:
            try:
                yield name, local
            finally:
                local.close()
            return
        shared = SharedLog(self._blobs, job_id, chosen.number) if self._blobs else None
        yield name, shared if shared is not None and shared.exists else None

    def log_gone(self, job_id: int, attempt: int | None = None) -> bool:
        """Whether the attempt had a log that is no longer kept (retention, or its host went
        away before it could be copied): pages say so instead of showing nothing."""
        chosen = self._log_attempt(job_id, attempt)
        if chosen is None:
            return False
        with self._open_log(job_id, chosen.number) as (_, log):
            return log is None

    def read_log(
        self,
        actor: Actor,
        job_id: int,
        attempt: int | None,
        offset: int | None,
        tail_lines: int | None,
    ) -> LogChunk:
        """At most `MAX_ANSWER_BYTES` of the log from `offset` (default 0), or its last
        `tail_lines` lines; `next_offset` says where to continue."""
        self.get(actor, job_id)
        with self._open_log(job_id, attempt) as (_, log):
            return read_window(log, offset, tail_lines)

    def read_log_lines(self, actor: Actor, job_id: int, from_: int | None, size: int) -> LineWindow:
        """Livy's numbered lines of the newest attempt's log (see LineIndex.read_lines)."""
        self.get(actor, job_id)
        with self._open_log(job_id, None) as (name, log):
            return self._line_index.read_lines(name, log, from_, size)

    def download_log(
        self, actor: Actor | None, job_id: int, attempt: int | None = None
    ) -> tuple[str, int, Iterator[bytes]]:
        """(file name, size, chunks) of a whole log, for a download; NotFound without one.
        `actor` None: a share link, already verified."""
        if actor is not None:
            self.get(actor, job_id)
        stack = ExitStack()
        name, log = stack.enter_context(self._open_log(job_id, attempt))
        if log is None:
            stack.close()
            raise NotFound(f"job {job_id} has no driver log")
        number = name.rpartition("/")[2]

        def chunks() -> Iterator[bytes]:
            with stack:
                yield from stream_log(log)

        return f"job-{job_id}-attempt-{number}.log", log.size, chunks()

    def follow_log(
        self,
        actor: Actor | None,
        job_id: int,
        attempt: int | None,
        offset: int | None,
        tail_lines: int | None,
        still_allowed: Callable[[], bool] | None = None,
    ) -> AsyncIterator[bytes]:
        """Stream the log as it grows, until the job ends and everything has been sent.
        Without `attempt`, moves on to the next attempt when the job is retried. Access is
        checked now, and again every few seconds while streaming: a revoked token, a
        disabled user or a lost right to the job ends the stream. `actor` None: a share
        link, whose `still_allowed` re-checks it."""
        if actor is not None:
            first = self.read_log(actor, job_id, attempt, offset, tail_lines)

            def allowed() -> bool:
                try:
                    principal = self._identity.session_principal(
                        actor.name, actor.principal.token_id
                    )
                    return principal.can_see(*self._owner_and_team(job_id))
                except ChidoriError:
                    return False

            still_allowed = allowed
        else:
            first = self.read_log_unchecked(job_id, attempt, offset, tail_lines)
        return self._follow(job_id, attempt, first, still_allowed or (lambda: True))

    def _owner_and_team(self, job_id: int) -> tuple[str, str | None]:
        job = self._jobs.get_job(job_id)
        return job.owner, job.team

    async def _follow(
        self, job_id: int, attempt: int | None, first: LogChunk, allowed: Callable[[], bool]
    ) -> AsyncIterator[bytes]:
        if first.data:
            yield first.data
        position = first.next_offset
        chosen = await asyncio.to_thread(self._log_attempt, job_id, attempt)
        number = chosen.number if chosen else None
        checked = time.monotonic()
        ended_at: float | None = None
        while True:
            if time.monotonic() - checked >= _FOLLOW_RECHECK_SECONDS:
                if not await asyncio.to_thread(allowed):
                    return
                checked = time.monotonic()
            data, settled = b"", True
            if number is not None:
                chunk, settled = await asyncio.to_thread(self._read_chunk, job_id, number, position)
                data, position = chunk.data, chunk.next_offset
            if data:
                # Behind the log's end: read on; the job's state matters once caught up.
                yield data
                continue
            job = await asyncio.to_thread(self._jobs.get_job, job_id)
            current = await asyncio.to_thread(self._log_attempt, job_id, attempt)
            if current is not None and current.number != number:
                number, position = current.number, 0
                continue
            if job.state.terminal:
                # Read once more after seeing the end (the last bytes may have come between
                # the read and the state). A log read from shared storage trails its host:
                # wait for its last copy, but not for a host that died before making it.
                if ended_at is None:
                    ended_at = time.monotonic()
                    continue
                if settled or time.monotonic() - ended_at > _FOLLOW_SETTLE_SECONDS:
                    return
            await self._notifier.wait(0.25)

    def _read_chunk(self, job_id: int, attempt: int, position: int) -> tuple[LogChunk, bool]:
        """The next piece of a followed log, and whether the log is final where it was read
        (a local file, or shared copies with their end marker)."""
        with self._open_log(job_id, attempt) as (_, log):
            settled = not isinstance(log, SharedLog) or log.complete
            return read_window(log, position, None, FOLLOW_CHUNK_BYTES), settled


def _references(spec: JobSpec) -> list[tuple[str, str]]:
    """(field, reference) for every file a spec names."""
    # A session's or a Connect server's application is Chidori's built-in driver, not a file.
    built_in = spec.kind in BUILT_IN_APPLICATIONS
    refs = [] if built_in else [("application", spec.application)]
    for field in ("py_files", "jars", "files", "archives"):
        refs += [(f"{field}[{i}]", ref) for i, ref in enumerate(getattr(spec, field))]
    return refs


def _without_alias(reference: str) -> str:
    """A reference without an archive's `#alias` (as ArtifactStore.resolve reads it)."""
    if "#" in reference and not reference.startswith("#"):
        return reference.rsplit("#", 1)[0]
    return reference


def _is_upload(reference: str) -> bool:
    """Whether ArtifactStore.resolve reads `reference` as an upload:// URI."""
    ref = _without_alias(reference)
    return "://" in ref and urlsplit(ref).scheme.lower() == UPLOAD_SCHEME
