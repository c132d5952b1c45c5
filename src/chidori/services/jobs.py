"""Job use cases: submit, read, list, cancel, wait, logs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from chidori.artifacts import ArtifactStore
from chidori.config import ClusterConfig
from chidori.errors import FieldError, InvalidRequest, NotFound
from chidori.records import Attempt, Event, Job, JobQuery, Page
from chidori.services.notify import ChangeNotifier
from chidori.spec import JobSpec
from chidori.states import JobState
from chidori.store import Store

_POLL_SECONDS = 1.0
_FOLLOW_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Actor:
    """Who makes a request, and from where (for events and audit)."""

    name: str
    source: str | None = None


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
    ) -> None:
        self._store = store
        self._artifacts = artifacts
        self._clusters = clusters
        self._notifier = notifier

    # ---- submission -------------------------------------------------------------------------

    def submit(
        self, spec: JobSpec, actor: Actor, idempotency_key: str | None = None
    ) -> tuple[Job, bool]:
        """Validate what the spec points at, then store the job QUEUED. Returns (job, created);
        created is False when an idempotent retry returned the first job."""
        self.check_references(spec)
        return self._store.create_job(
            spec, actor.name, idempotency_key=idempotency_key, source=actor.source
        )

    def check_references(self, spec: JobSpec) -> None:
        """Raise InvalidRequest naming every field that points at something unusable."""
        errors = []
        if spec.cluster not in self._clusters:
            known = ", ".join(sorted(self._clusters))
            errors.append(("cluster", f"unknown cluster {spec.cluster!r}; known: {known}"))
        refs = [("application", spec.application)]
        for field in ("py_files", "jars", "files", "archives"):
            refs += [(f"{field}[{i}]", ref) for i, ref in enumerate(getattr(spec, field))]
        for field, ref in refs:
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

    def get(self, job_id: int) -> Job:
        return self._store.get_job(job_id)

    def search(self, query: JobQuery) -> Page:
        return self._store.list_jobs(query)

    def events(self, job_id: int) -> list[Event]:
        return self._store.list_events(job_id)

    def attempts(self, job_id: int) -> list[Attempt]:
        return self._store.list_attempts(job_id)

    def cancel(self, job_id: int, actor: Actor) -> Job:
        return self._store.request_cancel(job_id, actor.name, actor.source)

    async def wait_for_change(self, job_id: int, state: JobState | None, timeout: float) -> Job:
        """The job as soon as its state differs from `state` (or when `timeout` runs out)."""
        deadline = time.monotonic() + timeout
        while True:
            job = await asyncio.to_thread(self._store.get_job, job_id)
            remaining = deadline - time.monotonic()
            if state is None or job.state != state or remaining <= 0:
                return job
            await self._notifier.wait(min(remaining, _POLL_SECONDS))

    # ---- logs -------------------------------------------------------------------------------

    def log_path(self, job_id: int, attempt: int | None = None) -> Path | None:
        """The driver log of one attempt (default: the newest that has a log). None when the
        job has not started a driver yet."""
        attempts = self._store.list_attempts(job_id)
        if attempt is not None:
            chosen = [a for a in attempts if a.number == attempt]
            if not chosen:
                raise NotFound(f"job {job_id} has no attempt {attempt}")
            attempts = chosen
        with_logs = [a for a in attempts if a.log_path]
        return Path(with_logs[-1].log_path) if with_logs and with_logs[-1].log_path else None

    def read_log(
        self, job_id: int, attempt: int | None, offset: int | None, tail_lines: int | None
    ) -> LogChunk:
        """Bytes of the log from `offset`, or its last `tail_lines` lines, or all of it."""
        path = self.log_path(job_id, attempt)
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

    async def follow_log(
        self, job_id: int, attempt: int | None, offset: int | None, tail_lines: int | None
    ) -> AsyncIterator[bytes]:
        """Stream the log as it grows, until the job ends and everything has been sent.
        Without `attempt`, moves on to the next attempt when the job is retried."""
        first = await asyncio.to_thread(self.read_log, job_id, attempt, offset, tail_lines)
        if first.data:
            yield first.data
        position = first.next_offset
        path = await asyncio.to_thread(self.log_path, job_id, attempt)
        while True:
            job = await asyncio.to_thread(self._store.get_job, job_id)
            current = await asyncio.to_thread(self.log_path, job_id, attempt)
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
