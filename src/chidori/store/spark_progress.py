"""The Spark progress records: written by the replica hosting a driver, read by the edges.

An attempt keeps its summary (the contract's counts, `updated_at`, `final`) in
`attempts.progress` and its stage list in `attempt_stages`; the job keeps a copy of its
current attempt's counts in `jobs.progress`, tagged with the attempt number, so the jobs list
reads them from the rows it reads anyway and never a stage list (`rows.job_progress` drops a
copy left by an earlier attempt).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update

from chidori.domain.errors import NotFound
from chidori.store.database import Database
from chidori.store.models import AttemptRow, AttemptStagesRow, JobRow


class ProgressRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def record(self, job_id: int, attempt: int, progress: dict[str, Any]) -> None:
        """Keep `progress` (the summary with its `stages`) as this attempt's, and as the
        job's when the attempt is its current one."""
        summary = {k: v for k, v in progress.items() if k != "stages"}
        stages = list(progress.get("stages") or [])
        with self._db.writing() as session:
            moved = session.execute(
                update(AttemptRow)
                .where(AttemptRow.job_id == job_id, AttemptRow.number == attempt)
                .values(progress=summary)
                .execution_options(synchronize_session=False)
            )
            if moved.rowcount != 1:  # type: ignore[attr-defined]
                return  # no such attempt (the job was deleted)
            session.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.attempts == attempt)
                .values(progress={**summary, "attempt": attempt})
                .execution_options(synchronize_session=False)
            )
            row = session.get(AttemptStagesRow, (job_id, attempt))
            if row is None:
                session.add(AttemptStagesRow(job_id=job_id, attempt=attempt, stages=stages))
            else:
                row.stages = stages
        self._db.notify_change([job_id], wake_scheduler=False)

    def latest(self, job_id: int) -> dict[str, Any] | None:
        """The job's current attempt's whole summary with its `stages`, or None when no
        progress is known. Raises NotFound when the job does not exist."""
        with self._db.reading() as session:
            attempts = session.scalar(select(JobRow.attempts).where(JobRow.id == job_id))
            if attempts is None:
                raise NotFound(f"job {job_id} not found")
            summary = session.scalar(
                select(AttemptRow.progress).where(
                    AttemptRow.job_id == job_id, AttemptRow.number == attempts
                )
            )
            if summary is None:
                return None
            stages = session.scalar(
                select(AttemptStagesRow.stages).where(
                    AttemptStagesRow.job_id == job_id, AttemptStagesRow.attempt == attempts
                )
            )
            return {**summary, "stages": list(stages or [])}
