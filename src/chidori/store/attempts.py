"""The attempts repository: one attempt's lifecycle, from its claim to its end.

An attempt is claimed (the job QUEUED → ADMITTED, the attempt STARTING, owned by a server with a
lease), started (RUNNING, with its driver's pid and log), given its Spark application id, and
ended (the job done, or back to QUEUED for a retry, by `chidori.domain.lifecycle`). Every step
is a compare-and-set on the job's attempt number, so a stale attempt can never overwrite a newer
one, and each runs the prebuilt statements of `chidori.store.statements`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, select, update

from chidori.domain.lifecycle import deferred_backoff, next_state, retry_backoff
from chidori.domain.records import Attempt, Claim, Ending, Job, Outcome
from chidori.domain.spec import JobSpec
from chidori.domain.states import AttemptState, JobState
from chidori.store.database import Database, LeanConnection
from chidori.store.models import AttemptRow, JobRow
from chidori.store.rows import add_event, attempt_record, job_record
from chidori.store.statements import (
    ACTIVE_ATTEMPT,
    ACTIVE_JOB,
    CANCEL_REQUESTED,
    CLAIM,
    END_ATTEMPT,
    END_JOB,
    INSERT_ATTEMPT,
    INSERT_EVENT,
    JOB_TO_FINISH,
    RUN_ATTEMPT,
    RUN_JOB,
    run,
)


def claim_in(
    conn: Connection | LeanConnection,
    job_id: int,
    server_id: str,
    host: str,
    lease_seconds: float,
    now: datetime,
    start_type: str | None = None,
    start_note: str | None = None,
    warm_driver: str | None = None,
) -> Claim | None:
    """Move one QUEUED job to ADMITTED with a new attempt owned by `server_id`, inside the
    caller's transaction. None if the job is no longer QUEUED (another replica took it)."""
    # One UPDATE ... RETURNING (a compare-and-set on the state) gives the row as it is now.
    row = run(
        conn,
        CLAIM,
        {"b_id": job_id, "b_now": now, "b_start_type": start_type, "b_start_note": start_note},
    ).one_or_none()
    if row is None:
        return None
    number = row.attempts
    run(
        conn,
        INSERT_ATTEMPT,
        {
            "job_id": job_id,
            "number": number,
            "state": AttemptState.STARTING.value,
            "server_id": server_id,
            "host": host,
            "started_at": now,
            "lease_expires_at": now + timedelta(seconds=lease_seconds),
            "start_type": start_type,
            "start_note": start_note,
        },
    )
    run(
        conn,
        INSERT_EVENT,
        {
            "job_id": job_id,
            "attempt": number,
            "time": now,
            "type": "state",
            "state": "ADMITTED",
            "actor": server_id,
            "reason": f"attempt {number} on {host}",
        },
    )
    return Claim(job=job_record(row), attempt=number, warm_driver=warm_driver)


class AttemptRepository:
    """Attempts: start, application id, end; and the attempts a server must act on."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def mark_running(
        self, job_id: int, attempt: int, pid: int, log_path: str, actor: str, ready: bool = False
    ) -> bool:
        """The driver process started (`ready`: and the application can run at once: a warm
        driver took it, or no Spark session is needed). False if this attempt is no longer
        current (fenced)."""
        now = self._db.now()
        keys = {
            "b_job": job_id,
            "b_attempt": attempt,
            "b_now": now,
            "b_ready": now if ready else None,
        }
        with self._db.lean() as conn:
            moved = run(conn, RUN_ATTEMPT, {**keys, "b_pid": pid, "b_log": log_path})
            if moved.rowcount != 1:
                return False
            run(conn, RUN_JOB, keys)
            run(
                conn,
                INSERT_EVENT,
                {
                    "job_id": job_id,
                    "attempt": attempt,
                    "time": now,
                    "type": "state",
                    "state": "RUNNING",
                    "actor": actor,
                    "reason": f"driver process {pid} started",
                },
            )
        self._db.notify_change([job_id], wake_scheduler=False)
        return True

    def set_start(self, job_id: int, attempt: int, start_type: str, note: str | None) -> None:
        """Record how an attempt is started (a warm driver refused it: it starts cold)."""
        with self._db.writing() as session:
            session.execute(
                update(AttemptRow)
                .where(AttemptRow.job_id == job_id, AttemptRow.number == attempt)
                .values(start_type=start_type, start_note=note)
                .execution_options(synchronize_session=False)
            )
            session.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.attempts == attempt)
                .values(start_type=start_type, start_note=note)
                .execution_options(synchronize_session=False)
            )

    def set_app_id(self, job_id: int, attempt: int, app_id: str, actor: str) -> None:
        with self._db.writing() as session:
            session.execute(
                update(AttemptRow)
                .where(AttemptRow.job_id == job_id, AttemptRow.number == attempt)
                .values(
                    spark_app_id=app_id,
                    # The id is printed once the SparkContext is up: the cold start is over.
                    ready_at=func.coalesce(AttemptRow.ready_at, self._db.now()),
                )
                .execution_options(synchronize_session=False)
            )
            session.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.attempts == attempt)
                .values(
                    spark_app_id=app_id,
                    updated_at=self._db.now(),
                    ready_at=func.coalesce(JobRow.ready_at, self._db.now()),
                )
                .execution_options(synchronize_session=False)
            )
            add_event(
                session,
                self._db.now(),
                job_id,
                "spark_app",
                actor,
                reason=f"Spark application {app_id}",
                attempt=attempt,
            )
        self._db.notify_change([job_id], wake_scheduler=False)

    def record_executors(
        self,
        job_id: int,
        attempt: int,
        executors: list[dict[str, Any]],
        notes: list[str],
        actor: str,
    ) -> None:
        """Keep what the attempt's executor pods look like now, with one `executor` event per
        change worth telling (scheduled, running, pending because ..., failed)."""
        with self._db.writing() as session:
            session.execute(
                update(AttemptRow)
                .where(AttemptRow.job_id == job_id, AttemptRow.number == attempt)
                .values(executors=executors)
                .execution_options(synchronize_session=False)
            )
            now = self._db.now()
            for note in notes:
                add_event(session, now, job_id, "executor", actor, reason=note, attempt=attempt)
        self._db.notify_change([job_id], wake_scheduler=False)

    def finish_attempt(
        self, job_id: int, attempt: int, outcome: Outcome, actor: str, lost_retry_limit: int = 3
    ) -> Job | None:
        """Record how an attempt ended and move the job on: terminal, or back to QUEUED for a
        retry. Returns the job, or None if the attempt was already finished (fenced)."""
        with self._db.lean() as conn:
            row = self.finish_in(conn, Ending(job_id, attempt, outcome, actor, lost_retry_limit))
        if row is None:
            return None
        # No wake-up for the scheduler: the one that records an end admits right after it
        # (a driver's exit, or the scheduler's own step).
        self._db.notify_change([job_id], wake_scheduler=False)
        return job_record(row)

    def finish_in(self, conn: Connection | LeanConnection, ending: Ending) -> Any | None:
        """`finish_attempt` inside the caller's write transaction: the job's row as it is now
        (`rows.job_record` makes it a record; the admit step, which ends an attempt on every
        driver exit, needs none), or None if fenced. The caller tells listeners
        (`notify_change`, without waking the scheduler) once it has committed."""
        job_id, attempt, outcome = ending.job_id, ending.attempt, ending.outcome
        now = self._db.now()
        moved = run(
            conn,
            END_ATTEMPT,
            {
                "b_job": job_id,
                "b_attempt": attempt,
                "b_state": outcome.state.value,
                "b_now": now,
                "b_code": outcome.exit_code,
                "b_reason": outcome.reason,
            },
        )
        if moved.rowcount != 1:
            return None
        current = run(conn, JOB_TO_FINISH, {"b_job": job_id}).one_or_none()
        if current is None or current.attempts != attempt or current.state not in ACTIVE_JOB:
            return None
        max_retries, rerun_lost = JobSpec.retries_of(current.spec)
        step = next_state(
            outcome,
            bool(current.cancel_requested),
            current.failed_attempts,
            current.lost_attempts,
            max_retries,
            ending.lost_retry_limit,
            rerun_lost,
        )
        retry = step.state is JobState.QUEUED
        backoff = retry and outcome.state is AttemptState.FAILED and not outcome.deferred
        # Attempts neither failed nor lost were refused (for quota), this one included.
        refusals = attempt - step.failed - step.lost
        not_before = (
            now + deferred_backoff(refusals)
            if outcome.deferred and retry
            else now + retry_backoff(step.failed)
            if backoff
            else None
        )
        row = run(
            conn,
            END_JOB,
            {
                "b_job": job_id,
                "b_state": step.state.value,
                "b_reason": step.reason,
                "b_code": outcome.exit_code,
                "b_now": now,
                "b_finished": None if retry else now,
                "b_not_before": not_before,
                "b_failed": step.failed,
                "b_lost": step.lost,
            },
        ).one()
        event = {"job_id": job_id, "attempt": attempt, "time": now, "actor": ending.actor}
        run(
            conn,
            INSERT_EVENT,
            [
                {**event, "type": "attempt", "state": outcome.state.value,
                 "reason": outcome.reason},
                {**event, "type": "state", "state": step.state.value, "reason": step.reason},
            ],
        )  # fmt: skip
        return row

    def cancel_requested_attempts(self, server_id: str) -> list[Attempt]:
        """Active attempts hosted by `server_id` whose job was asked to cancel."""
        with self._db.reading() as session:
            rows = session.connection().execute(CANCEL_REQUESTED, {"b_server": server_id})
            return [attempt_record(row) for row in rows]

    def active_attempts(self, server_id: str | None = None) -> list[Attempt]:
        """Attempts still STARTING or RUNNING, of one server or of all."""
        stmt = select(AttemptRow).where(AttemptRow.state.in_(ACTIVE_ATTEMPT))
        if server_id is not None:
            stmt = stmt.where(AttemptRow.server_id == server_id)
        with self._db.reading() as session:
            return [attempt_record(row) for row in session.scalars(stmt)]

    def expired_attempts(self) -> list[Attempt]:
        """Active attempts whose lease ran out: their host stopped renewing."""
        now = self._db.now()
        with self._db.reading() as session:
            rows = session.scalars(
                select(AttemptRow).where(
                    AttemptRow.state.in_(ACTIVE_ATTEMPT), AttemptRow.lease_expires_at < now
                )
            )
            return [attempt_record(row) for row in rows]
