"""Livy interactive sessions in the store: each session's own fields and its statements.

A session is a job of kind `session`; this adds what only sessions have. Statement numbers
start at 0 within a session, as Livy's do. Every update from a driver is fenced by the attempt
the statement was handed to, so a result from an older driver never overwrites a newer one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import exists, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from chidori.domain.errors import Conflict, NotFound
from chidori.domain.records import (
    ACTIVE_STATEMENT_STATES,
    CANCELLED,
    CANCELLING,
    ERROR,
    RUNNING,
    SUBMITTED_THROUGH,
    WAITING,
    Job,
    Statement,
)
from chidori.store.database import Database
from chidori.store.models import JobLabelRow, JobRow, LivySessionRow, LivyStatementRow
from chidori.store.rows import job_record

# The statement record and its states live in chidori.domain.records; named here as well for
# the session relay (chidori.host.session_relay), which reads them with the store.
__all__ = [
    "CANCELLED",
    "CANCELLING",
    "SESSION_KIND",
    "WAITING",
    "SessionInfo",
    "SessionStore",
    "Statement",
    "lost_output",
]

SESSION_KIND = "session"


@dataclass(frozen=True)
class SessionInfo:
    job_id: int
    kind: str
    proxy_user: str | None
    ready_attempt: int | None


def _info(row: LivySessionRow) -> SessionInfo:
    return SessionInfo(row.job_id, row.kind, row.proxy_user, row.ready_attempt)


def _statement(row: LivyStatementRow) -> Statement:
    return Statement(
        job_id=row.job_id,
        number=row.number,
        code=row.code,
        kind=row.kind,
        state=row.state,
        attempt=row.attempt,
        output=row.output,
        created_at=row.created_at,
        started_at=row.started_at,
        completed_at=row.completed_at,
        submitted_by=row.submitted_by,
    )


def lost_output(number: int, reason: str) -> dict[str, Any]:
    """Livy's error output, for a statement that can no longer complete."""
    return {
        "status": "error",
        "execution_count": number,
        "ename": "SessionLost",
        "evalue": reason,
        "traceback": [],
    }


class SessionStore:
    def __init__(self, store: Database) -> None:
        self._store = store

    def now(self) -> datetime:
        return self._store.now()

    # ---- sessions ---------------------------------------------------------------------------

    def create(self, job_id: int, kind: str, proxy_user: str | None) -> SessionInfo:
        with self._store.writing() as session:
            row = LivySessionRow(job_id=job_id, kind=kind, proxy_user=proxy_user)
            session.add(row)
            session.flush()
            return _info(row)

    def get(self, job_id: int) -> SessionInfo | None:
        with self._store.reading() as session:
            row = session.get(LivySessionRow, job_id)
            return None if row is None else _info(row)

    def sessions_among(self, job_ids: Iterable[int]) -> dict[int, SessionInfo]:
        ids = list(job_ids)
        if not ids:
            return {}
        with self._store.reading() as session:
            rows = session.scalars(select(LivySessionRow).where(LivySessionRow.job_id.in_(ids)))
            return {row.job_id: _info(row) for row in rows}

    def list_livy_jobs(
        self,
        sessions: bool,
        visible_to: tuple[str, str | None] | None,
        offset: int,
        limit: int,
    ) -> tuple[int, list[Job]]:
        """Jobs submitted through Livy, newest first: sessions, or batches (everything else).
        Returns (how many in all, the page)."""
        conditions: list[Any] = [
            exists().where(
                JobLabelRow.job_id == JobRow.id,
                JobLabelRow.key == SUBMITTED_THROUGH,
                JobLabelRow.value == "livy",
            ),
            JobRow.kind == SESSION_KIND if sessions else JobRow.kind != SESSION_KIND,
        ]
        if visible_to is not None:
            viewer, team = visible_to
            conditions.append(
                or_(JobRow.owner == viewer, JobRow.team == team) if team else JobRow.owner == viewer
            )
        with self._store.reading() as session:
            total = session.scalar(select(func.count()).select_from(JobRow).where(*conditions))
            rows = session.scalars(
                select(JobRow)
                .where(*conditions)
                .order_by(JobRow.id.desc())
                .offset(offset)
                .limit(limit)
            )
            return int(total or 0), [job_record(row) for row in rows]

    def mark_ready(self, job_id: int, attempt: int, reason: str) -> None:
        """Attempt `attempt`'s driver is up. Statements an earlier driver had started can no
        longer complete (the new driver has a fresh namespace): they end `error`."""
        now = self._store.now()
        with self._store.writing() as session:
            row = session.get(LivySessionRow, job_id)
            if row is None or (row.ready_attempt or 0) >= attempt:
                return
            row.ready_attempt = attempt
            self._fail_started(
                session, job_id, lambda a: a is not None and a < attempt, reason, now
            )

    def fail_attempt(self, job_id: int, attempt: int, reason: str) -> None:
        """Attempt `attempt`'s driver ended: what it had been given and not finished ends
        `error`; what it had not started yet waits for the next driver, if any."""
        now = self._store.now()
        with self._store.writing() as session:
            self._fail_started(session, job_id, lambda a: a == attempt, reason, now)

    @staticmethod
    def _fail_started(
        session: Session,
        job_id: int,
        which: Callable[[int | None], bool],
        reason: str,
        now: datetime,
    ) -> None:
        rows = session.scalars(
            select(LivyStatementRow).where(
                LivyStatementRow.job_id == job_id,
                LivyStatementRow.state.in_(ACTIVE_STATEMENT_STATES),
            )
        )
        for row in rows:
            if not which(row.attempt):
                continue
            if row.state == WAITING:
                row.attempt = None  # never started: hand it to the next driver
            elif row.state == CANCELLING:
                row.state, row.completed_at = CANCELLED, now
            else:
                row.state, row.completed_at = ERROR, now
                row.output = lost_output(row.number, reason)

    # ---- statements -------------------------------------------------------------------------

    def add_statement(
        self, job_id: int, code: str, kind: str, submitted_by: str | None = None
    ) -> Statement:
        # Numbers are max + 1: two replicas adding at once collide on the unique constraint,
        # and the loser takes the next number.
        for _ in range(5):
            try:
                with self._store.writing() as session:
                    last = session.scalar(
                        select(func.max(LivyStatementRow.number)).where(
                            LivyStatementRow.job_id == job_id
                        )
                    )
                    row = LivyStatementRow(
                        job_id=job_id,
                        number=0 if last is None else last + 1,
                        code=code,
                        kind=kind,
                        state=WAITING,
                        created_at=self._store.now(),
                        submitted_by=submitted_by,
                    )
                    session.add(row)
                    session.flush()
                    return _statement(row)
            except IntegrityError:
                continue
        raise Conflict("too many statements submitted at once; try again")

    def get_statement(self, job_id: int, number: int) -> Statement:
        with self._store.reading() as session:
            row = session.scalar(
                select(LivyStatementRow).where(
                    LivyStatementRow.job_id == job_id, LivyStatementRow.number == number
                )
            )
            if row is None:
                raise NotFound("Statement not found")
            return _statement(row)

    def list_statements(self, job_id: int, active_only: bool = False) -> list[Statement]:
        stmt = select(LivyStatementRow).where(LivyStatementRow.job_id == job_id)
        if active_only:
            stmt = stmt.where(LivyStatementRow.state.in_(ACTIVE_STATEMENT_STATES))
        with self._store.reading() as session:
            return [_statement(r) for r in session.scalars(stmt.order_by(LivyStatementRow.number))]

    def cancel_statement(self, job_id: int, number: int) -> Statement:
        """A statement no driver has yet is cancelled at once; one handed to a driver becomes
        `cancelling` until the driver reports it. Finished statements are left alone."""
        with self._store.writing() as session:
            row = session.scalar(
                select(LivyStatementRow)
                .where(LivyStatementRow.job_id == job_id, LivyStatementRow.number == number)
                .with_for_update()
            )
            if row is None:
                raise NotFound("Statement not found")
            if row.state == WAITING and row.attempt is None:
                row.state, row.completed_at = CANCELLED, self._store.now()
            elif row.state in (WAITING, RUNNING):
                row.state = CANCELLING
            session.flush()
            return _statement(row)

    # ---- the relay's updates (fenced by attempt) --------------------------------------------

    def mark_delivered(self, job_id: int, numbers: list[int], attempt: int) -> None:
        with self._store.writing() as session:
            session.execute(
                update(LivyStatementRow)
                .where(
                    LivyStatementRow.job_id == job_id,
                    LivyStatementRow.number.in_(numbers),
                    LivyStatementRow.state == WAITING,
                )
                .values(attempt=attempt)
            )

    def mark_started(self, job_id: int, number: int, attempt: int, started: datetime) -> None:
        with self._store.writing() as session:
            session.execute(
                update(LivyStatementRow)
                .where(
                    LivyStatementRow.job_id == job_id,
                    LivyStatementRow.number == number,
                    LivyStatementRow.attempt == attempt,
                    LivyStatementRow.state == WAITING,
                )
                .values(state=RUNNING, started_at=started)
            )

    def mark_finished(
        self,
        job_id: int,
        number: int,
        attempt: int,
        state: str,
        output: dict[str, Any] | None,
        started: datetime,
        completed: datetime,
    ) -> None:
        with self._store.writing() as session:
            session.execute(
                update(LivyStatementRow)
                .where(
                    LivyStatementRow.job_id == job_id,
                    LivyStatementRow.number == number,
                    LivyStatementRow.attempt == attempt,
                    LivyStatementRow.state.in_(ACTIVE_STATEMENT_STATES),
                )
                .values(state=state, output=output, started_at=started, completed_at=completed)
            )
