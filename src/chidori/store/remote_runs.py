"""Attempts on remote clusters (Livy, Databricks, ...): the run each was given by its service,
its start, and its adoption by another replica.

The run id is stored as soon as the service answers the submission, before anything relies
on it: a replica that adopts the attempt (its server stopped renewing the lease) polls that
run instead of submitting again. Every write is a compare-and-set on the attempt's server,
so a replica that lost an attempt can no longer write for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update

from chidori.domain.records import Attempt
from chidori.domain.states import AttemptState, JobState
from chidori.store.database import Database
from chidori.store.models import AttemptRow, JobRow
from chidori.store.rows import add_event, attempt_record
from chidori.store.statements import ACTIVE_ATTEMPT


@dataclass(frozen=True)
class RemoteAttempt:
    """An active remote attempt as its watcher needs it."""

    attempt: Attempt
    cluster: str
    cancel_requested: bool


class RemoteRunStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def watched(self, server_id: str, clusters: Sequence[str]) -> list[RemoteAttempt]:
        """The current, active attempts `server_id` holds on `clusters`."""
        if not clusters:
            return []
        stmt = (
            select(AttemptRow, JobRow.cluster, JobRow.cancel_requested)
            .join(JobRow, JobRow.id == AttemptRow.job_id)
            .where(
                AttemptRow.server_id == server_id,
                AttemptRow.state.in_(ACTIVE_ATTEMPT),
                JobRow.attempts == AttemptRow.number,
                JobRow.cluster.in_(list(clusters)),
            )
        )
        with self._db.reading() as session:
            return [
                RemoteAttempt(attempt_record(row), cluster, bool(cancel))
                for row, cluster, cancel in session.execute(stmt)
            ]

    def record_submitted(
        self,
        job_id: int,
        attempt: int,
        run_id: str,
        url: str | None,
        log_path: str,
        server_id: str,
        cluster: str,
    ) -> bool:
        """The service accepted the run (`run_id`). False if the attempt is no longer this
        server's, or already has another run."""
        with self._db.writing() as session:
            moved = session.execute(
                update(AttemptRow)
                .where(
                    AttemptRow.job_id == job_id,
                    AttemptRow.number == attempt,
                    AttemptRow.server_id == server_id,
                    AttemptRow.state.in_(ACTIVE_ATTEMPT),
                    AttemptRow.remote_run_id.is_(None),
                )
                .values(remote_run_id=run_id, remote_url=url, log_path=log_path)
                .execution_options(synchronize_session=False)
            )
            if moved.rowcount != 1:  # type: ignore[attr-defined]
                return False
            add_event(
                session,
                self._db.now(),
                job_id,
                "remote",
                server_id,
                reason=f"submitted to {cluster} as run {run_id}",
                attempt=attempt,
            )
        self._db.notify_change([job_id], wake_scheduler=False)
        return True

    def record_running(self, job_id: int, attempt: int, server_id: str, detail: str) -> bool:
        """The service runs the attempt's driver: attempt and job RUNNING (once)."""
        now = self._db.now()
        with self._db.writing() as session:
            moved = session.execute(
                update(AttemptRow)
                .where(
                    AttemptRow.job_id == job_id,
                    AttemptRow.number == attempt,
                    AttemptRow.server_id == server_id,
                    AttemptRow.state == AttemptState.STARTING.value,
                )
                .values(state=AttemptState.RUNNING.value, ready_at=now)
                .execution_options(synchronize_session=False)
            )
            if moved.rowcount != 1:  # type: ignore[attr-defined]
                return False
            session.execute(
                update(JobRow)
                .where(
                    JobRow.id == job_id,
                    JobRow.attempts == attempt,
                    JobRow.state == JobState.ADMITTED.value,
                )
                .values(state=JobState.RUNNING.value, started_at=now, updated_at=now, ready_at=now)
                .execution_options(synchronize_session=False)
            )
            add_event(
                session, now, job_id, "state", server_id, state="RUNNING", reason=detail,
                attempt=attempt,
            )  # fmt: skip
        self._db.notify_change([job_id], wake_scheduler=False)
        return True

    def adopt(
        self,
        lost: Attempt,
        server_id: str,
        host: str,
        lease_seconds: float,
        reason: str,
        expired_only: bool = True,
    ) -> bool:
        """Take over a remote attempt whose server is gone (its lease expired, or, with
        `expired_only` false, a store only one server uses): from now on this server renews
        its lease and watches its run. False if someone else took it first or it ended."""
        now = self._db.now()
        conditions = [
            AttemptRow.job_id == lost.job_id,
            AttemptRow.number == lost.number,
            AttemptRow.server_id == lost.server_id,
            AttemptRow.state.in_(ACTIVE_ATTEMPT),
        ]
        if expired_only:
            conditions.append(AttemptRow.lease_expires_at < now)
        with self._db.writing() as session:
            moved = session.execute(
                update(AttemptRow)
                .where(*conditions)
                .values(
                    server_id=server_id,
                    host=host,
                    lease_expires_at=now + timedelta(seconds=lease_seconds),
                )
                .execution_options(synchronize_session=False)
            )
            if moved.rowcount != 1:  # type: ignore[attr-defined]
                return False
            add_event(
                session, now, lost.job_id, "remote", server_id,
                reason=f"adopted from {lost.server_id}: {reason}", attempt=lost.number,
            )  # fmt: skip
        self._db.notify_change([lost.job_id], wake_scheduler=False)
        return True

    def set_remote_url(self, job_id: int, attempt: int, server_id: str, url: str) -> None:
        """A better page of the run than the submission's, once the service tells it (Livy's
        Spark UI)."""
        with self._db.writing() as session:
            session.execute(
                update(AttemptRow)
                .where(
                    AttemptRow.job_id == job_id,
                    AttemptRow.number == attempt,
                    AttemptRow.server_id == server_id,
                )
                .values(remote_url=url)
                .execution_options(synchronize_session=False)
            )
        self._db.notify_change([job_id], wake_scheduler=False)

    def set_log_path(self, job_id: int, attempt: int, server_id: str, log_path: str) -> None:
        """Where this server now writes the attempt's log (after an adoption)."""
        with self._db.writing() as session:
            session.execute(
                update(AttemptRow)
                .where(
                    AttemptRow.job_id == job_id,
                    AttemptRow.number == attempt,
                    AttemptRow.server_id == server_id,
                )
                .values(log_path=log_path)
                .execution_options(synchronize_session=False)
            )
