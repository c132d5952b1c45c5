"""Job use cases: submit, read, list, cancel, wait, logs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

from chidori.artifacts import UPLOAD_SCHEME, ArtifactStore, Upload
from chidori.config import ClusterConfig
from chidori.errors import FieldError, Forbidden, InvalidRequest, NotFound
from chidori.identity import Principal, Role
from chidori.policy import check_job
from chidori.records import Attempt, Channel, Event, Job, JobQuery, Page
from chidori.services.admission import AdmissionService
from chidori.services.identity import Actor, IdentityService
from chidori.services.notify import ChangeNotifier
from chidori.services.ratelimit import RateLimiter
from chidori.spec import JobSpec
from chidori.states import JobState
from chidori.store import Store

_POLL_SECONDS = 1.0
_FOLLOW_CHUNK = 64 * 1024


@dataclass(frozen=True)
class LogChunk:
    data: bytes
    next_offset: int
    size: int


class JobService:
    def __init__(
        self,
        store: Store,
        artifacts: ArtifactStore,
        clusters: Mapping[str, ClusterConfig],
        notifier: ChangeNotifier,
        identity: IdentityService,
        admission: AdmissionService,
        submit_limiter: RateLimiter,
        admins_only: str | None = None,
    ) -> None:
        """`admins_only`: why only admins may submit (jobs cannot be isolated), or None."""
        self._store = store
        self._admins_only = admins_only
        self._artifacts = artifacts
        self._clusters = clusters
        self._notifier = notifier
        self._identity = identity
        self._admission = admission
        self._submit_limiter = submit_limiter

    def upload(self, actor: Actor, stream: BinaryIO, filename: str) -> Upload:
        """Store a file a job will use (users and admins only)."""
        actor.principal.require(Role.ADMIN, Role.USER)
        stored = self._artifacts.save(stream, filename)
        # The content is shared on disk; the right to name it in a job is the team's.
        self._store.record_upload(stored.uri, actor.name, actor.principal.team, stored.size)
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
        return self._store.create_job(
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

    async def submit_checked(
        self, actor: Actor, spec: JobSpec, idempotency_key: str | None = None
    ) -> tuple[Job, bool]:
        """Store a submission `check_submission` accepted (from the event loop)."""
        return await self._store.create_job_async(
            spec,
            actor.name,
            team=actor.principal.team,
            idempotency_key=idempotency_key,
            source=actor.source,
        )

    def check_references(self, spec: JobSpec, principal: Principal) -> None:
        """Raise InvalidRequest naming every field that points at something unusable. An
        upload is usable by whoever stored it, by their team, and by admins: to anyone else
        it answers as an upload that does not exist."""
        errors = []
        if spec.cluster not in self._clusters:
            known = ", ".join(sorted(self._clusters))
            errors.append(("cluster", f"unknown cluster {spec.cluster!r}; known: {known}"))
        for field, ref in _references(spec):
            if (
                _is_upload(ref)
                and not principal.is_admin
                and not self._store.upload_known(
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

    def get(self, actor: Actor, job_id: int) -> Job:
        """The job, if `actor` may see it; NotFound otherwise (existence is not revealed)."""
        job = self._store.get_job(job_id)
        if not actor.principal.can_see(job.owner, job.team):
            raise NotFound(f"job {job_id} not found")
        return job

    def get_unchecked(self, job_id: int) -> Job:
        """The job, without an access check: only for share links, already verified."""
        return self._store.get_job(job_id)

    def read_log_unchecked(
        self, job_id: int, attempt: int | None, offset: int | None, tail_lines: int | None
    ) -> LogChunk:
        """A job's log, without an access check: only for share links."""
        return self._read_log_at(self._log_path(job_id, attempt), offset, tail_lines)

    def search(self, actor: Actor, query: JobQuery) -> Page:
        if not actor.principal.is_admin:
            query = replace(query, visible_to=(actor.name, actor.principal.team))
        return self._store.list_jobs(query)

    def events(self, actor: Actor, job_id: int) -> list[Event]:
        self.get(actor, job_id)
        return self._store.list_events(job_id)

    def attempts(self, actor: Actor, job_id: int) -> list[Attempt]:
        self.get(actor, job_id)
        return self._store.list_attempts(job_id)

    def cancel(self, actor: Actor, job_id: int) -> Job:
        self.get(actor, job_id)
        actor.principal.require(Role.ADMIN, Role.USER)
        return self._store.request_cancel(job_id, actor.name, actor.source)

    async def wait_for_change(
        self, actor: Actor, job_id: int, state: JobState | None, timeout: float
    ) -> Job:
        """The job as soon as its state differs from `state` (or when `timeout` runs out)."""
        await asyncio.to_thread(self.get, actor, job_id)
        deadline = time.monotonic() + timeout
        while True:
            job = await asyncio.to_thread(self._store.get_job, job_id)
            remaining = deadline - time.monotonic()
            if state is None or job.state != state or remaining <= 0:
                return job
            await self._notifier.wait(min(remaining, _POLL_SECONDS))

    # ---- logs -------------------------------------------------------------------------------

    def log_path_unchecked(self, job_id: int, attempt: int | None = None) -> Path | None:
        """Only for share links, already verified."""
        return self._log_path(job_id, attempt)

    def log_path(self, actor: Actor, job_id: int, attempt: int | None = None) -> Path | None:
        """The driver log of one attempt (default: the newest that has a log). None when the
        job has not started a driver yet."""
        self.get(actor, job_id)
        return self._log_path(job_id, attempt)

    def _log_path(self, job_id: int, attempt: int | None) -> Path | None:
        attempts = self._store.list_attempts(job_id)
        if attempt is not None:
            chosen = [a for a in attempts if a.number == attempt]
            if not chosen:
                raise NotFound(f"job {job_id} has no attempt {attempt}")
            attempts = chosen
        with_logs = [a for a in attempts if a.log_path]
        return Path(with_logs[-1].log_path) if with_logs and with_logs[-1].log_path else None

    def read_log(
        self,
        actor: Actor,
        job_id: int,
        attempt: int | None,
        offset: int | None,
        tail_lines: int | None,
    ) -> LogChunk:
        """Bytes of the log from `offset`, or its last `tail_lines` lines, or all of it."""
        return self._read_log_at(self.log_path(actor, job_id, attempt), offset, tail_lines)

    @staticmethod
    def _read_log_at(path: Path | None, offset: int | None, tail_lines: int | None) -> LogChunk:
        if path is None or not path.exists():
            return LogChunk(b"", 0, 0)
        size = path.stat().st_size
        with open(path, "rb") as handle:
            if tail_lines is not None:
                start = _tail_start(handle, size, tail_lines)
            else:
                start = min(max(offset or 0, 0), size)
            handle.seek(start)
            data = handle.read(size - start)
        return LogChunk(data, start + len(data), size)

    def follow_log(
        self,
        actor: Actor,
        job_id: int,
        attempt: int | None,
        offset: int | None,
        tail_lines: int | None,
    ) -> AsyncIterator[bytes]:
        """Stream the log as it grows, until the job ends and everything has been sent.
        Without `attempt`, moves on to the next attempt when the job is retried. Access is
        checked now, before streaming starts."""
        first = self.read_log(actor, job_id, attempt, offset, tail_lines)
        return self._follow(job_id, attempt, first)

    async def _follow(
        self, job_id: int, attempt: int | None, first: LogChunk
    ) -> AsyncIterator[bytes]:
        if first.data:
            yield first.data
        position = first.next_offset
        path = await asyncio.to_thread(self._log_path, job_id, attempt)
        while True:
            job = await asyncio.to_thread(self._store.get_job, job_id)
            current = await asyncio.to_thread(self._log_path, job_id, attempt)
            if current != path and current is not None:
                path, position = current, 0
            data = b""
            if path is not None:
                data = await asyncio.to_thread(_read_from, path, position)
            if data:
                position += len(data)
                yield data
                continue
            if job.state.terminal:
                return
            await self._notifier.wait(0.25)


def _references(spec: JobSpec) -> list[tuple[str, str]]:
    """(field, reference) for every file a spec names."""
    # A session's application is Chidori's built-in driver, not a file to resolve.
    refs = [] if spec.kind == "session" else [("application", spec.application)]
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


def _read_from(path: Path, position: int) -> bytes:
    try:
        with open(path, "rb") as handle:
            handle.seek(position)
            return handle.read(_FOLLOW_CHUNK)
    except FileNotFoundError:
        return b""


def _tail_start(handle: BinaryIO, size: int, lines: int) -> int:
    """Offset where the last `lines` lines of a file begin."""
    if lines <= 0:
        return size
    block = 64 * 1024
    position = size
    found = 0
    # A final newline ends the last line; it does not start a new one.
    end_adjust = 1
    while position > 0:
        step = min(block, position)
        position -= step
        handle.seek(position)
        chunk: bytes = handle.read(step)
        for index in range(len(chunk) - 1, -1, -1):
            if chunk[index] == 0x0A:
                if position + index == size - 1 and end_adjust:
                    end_adjust = 0
                    continue
                found += 1
                if found == lines:
                    return position + index + 1
    return 0
