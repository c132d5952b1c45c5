"""Retention: uploads no job has used, and logs of jobs that ended, are removed once older
than the retention period, from shared storage and from this host's disk.

Runs on every replica (each cleans its own disk; deleting a shared object twice is no
error), once an hour, a batch at a time so no sweep holds the database long.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import String, cast, select

from chidori.domain.states import TERMINAL_JOB_STATES
from chidori.storage.artifacts import upload_key
from chidori.storage.blobs import BlobStore
from chidori.store import Database
from chidori.store.models import JobRow, UploadRow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Swept:
    uploads: int = 0
    logs: int = 0  # jobs whose logs were removed


class Retention:
    def __init__(
        self,
        store: Database,
        blobs: BlobStore | None,
        upload_dir: Path,
        log_dir: Path,
        days: float,
        interval: float = 3600.0,
    ) -> None:
        self._store = store
        self._blobs = blobs
        self._upload_dir = upload_dir
        self._log_dir = log_dir
        self._period = timedelta(days=days)
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="retention", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(min(60.0, self._interval)):
            try:
                swept = self.sweep()
                if swept.uploads or swept.logs:
                    log.info(
                        "retention: removed %d upload(s), logs of %d job(s)",
                        swept.uploads,
                        swept.logs,
                    )
            except Exception:
                log.exception("retention sweep failed")
            if self._stop.wait(self._interval):
                return

    def sweep(self, now: datetime | None = None) -> Swept:
        cutoff = (now or self._store.now()) - self._period
        return Swept(self._sweep_uploads(cutoff), self._sweep_logs(cutoff))

    # ---- uploads ----------------------------------------------------------------------------

    def _stale_uploads(self, cutoff: datetime) -> set[tuple[str, str]]:
        """(sha, name) of uploads stored before `cutoff`, here or in shared storage."""
        found: set[tuple[str, str]] = set()
        if self._blobs is not None:
            for info in self._blobs.list("uploads/"):
                parts = info.key.split("/")
                if len(parts) == 3 and info.modified < cutoff:
                    found.add((parts[1], parts[2]))
        if self._upload_dir.is_dir():
            for folder in self._upload_dir.iterdir():
                if not folder.is_dir():
                    continue
                for path in folder.iterdir():
                    if path.is_file() and path.stat().st_mtime < cutoff.timestamp():
                        found.add((folder.name, path.name))
        return found

    def _in_use(self, uri: str, cutoff: datetime) -> bool:
        """Whether a job created since `cutoff`, or one not finished, names `uri`."""
        pattern = "%" + uri.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        unfinished = [state.value for state in TERMINAL_JOB_STATES]
        with self._store.reading() as session:
            found = session.scalar(
                select(JobRow.id)
                .where(
                    (JobRow.created_at >= cutoff) | JobRow.state.not_in(unfinished),
                    cast(JobRow.spec, String).like(pattern, escape="\\"),
                )
                .limit(1)
            )
        return found is not None

    def _sweep_uploads(self, cutoff: datetime) -> int:
        removed = 0
        for sha, name in sorted(self._stale_uploads(cutoff)):
            uri = f"upload://{sha}/{name}"
            if self._in_use(uri, cutoff):
                continue
            if self._blobs is not None:
                self._blobs.delete(upload_key(sha, name))
            local = self._upload_dir / sha / name
            local.unlink(missing_ok=True)
            with suppress(OSError):  # another name of the same content may still be there
                os.rmdir(local.parent)
            with self._store.writing() as session:
                for row in session.scalars(select(UploadRow).where(UploadRow.uri == uri)):
                    session.delete(row)
            removed += 1
        return removed

    # ---- logs -------------------------------------------------------------------------------

    def _ended_before(self, job_ids: set[int], cutoff: datetime) -> set[int]:
        """Of `job_ids`, those that ended before `cutoff` or no longer exist."""
        if not job_ids:
            return set()
        with self._store.reading() as session:
            rows = session.execute(
                select(JobRow.id, JobRow.state, JobRow.finished_at).where(JobRow.id.in_(job_ids))
            ).all()
        known = {row.id: row for row in rows}
        terminal = {state.value for state in TERMINAL_JOB_STATES}
        return {
            job_id
            for job_id in job_ids
            if job_id not in known
            or (
                known[job_id].state in terminal
                and known[job_id].finished_at is not None
                and known[job_id].finished_at < cutoff
            )
        }

    def _sweep_logs(self, cutoff: datetime) -> int:
        candidates: dict[int, list[str]] = {}
        if self._blobs is not None:
            for info in self._blobs.list("logs/"):
                job = info.key.split("/")[1]
                if job.isdigit() and info.modified < cutoff:
                    candidates.setdefault(int(job), []).append(info.key)
        local: dict[int, Path] = {}
        if self._log_dir.is_dir():
            for folder in self._log_dir.iterdir():
                if folder.name.isdigit() and folder.stat().st_mtime < cutoff.timestamp():
                    local[int(folder.name)] = folder
        gone = self._ended_before(set(candidates) | set(local), cutoff)
        for job_id in gone:
            if self._blobs is not None:
                for key in candidates.get(job_id, []):
                    self._blobs.delete(key)
            if job_id in local:
                shutil.rmtree(local[job_id], ignore_errors=True)
        return len(gone)
