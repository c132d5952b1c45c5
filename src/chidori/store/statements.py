"""The statements run for every job, built once.

Claiming a job, recording its start and its end, and the admit step's reads run these with
bound parameters on the transaction's connection: building a SQLAlchemy statement and its cache
key on every call cost several times the query itself on SQLite.
"""

from __future__ import annotations

from typing import cast

from sqlalchemy import Table, bindparam, insert, select, update

from chidori.domain.states import ACTIVE_ATTEMPT_STATES, ACTIVE_JOB_STATES, AttemptState, JobState
from chidori.store.models import AttemptRow, EventRow, JobLabelRow, JobRow

ACTIVE_JOB = [s.value for s in ACTIVE_JOB_STATES]
ACTIVE_ATTEMPT = [s.value for s in ACTIVE_ATTEMPT_STATES]
JOBS = cast(Table, JobRow.__table__)
ATTEMPTS = cast(Table, AttemptRow.__table__)
EVENTS = cast(Table, EventRow.__table__)
INSERT_EVENT = insert(EVENTS)
INSERT_JOBS = insert(JOBS).returning(JOBS.c.id, sort_by_parameter_order=True)
INSERT_LABELS = insert(cast(Table, JobLabelRow.__table__))
INSERT_ATTEMPT = insert(ATTEMPTS)
CLAIM = (
    update(JOBS)
    .where(JOBS.c.id == bindparam("b_id"), JOBS.c.state == JobState.QUEUED.value)
    .values(
        state=JobState.ADMITTED.value,
        attempts=JOBS.c.attempts + 1,
        admitted_at=bindparam("b_now"),
        updated_at=bindparam("b_now"),
        start_type=bindparam("b_start_type"),
        start_note=bindparam("b_start_note"),
        ready_at=None,
        reason=None,
        not_before=None,
        wait_reason=None,
    )
    .returning(*JOBS.c)
)
RUN_ATTEMPT = (
    update(ATTEMPTS)
    .where(
        ATTEMPTS.c.job_id == bindparam("b_job"),
        ATTEMPTS.c.number == bindparam("b_attempt"),
        ATTEMPTS.c.state == AttemptState.STARTING.value,
    )
    .values(
        state=AttemptState.RUNNING.value,
        pid=bindparam("b_pid"),
        log_path=bindparam("b_log"),
        ready_at=bindparam("b_ready"),
    )
)
RUN_JOB = (
    update(JOBS)
    .where(
        JOBS.c.id == bindparam("b_job"),
        JOBS.c.attempts == bindparam("b_attempt"),
        JOBS.c.state == JobState.ADMITTED.value,
    )
    .values(
        state=JobState.RUNNING.value,
        started_at=bindparam("b_now"),
        updated_at=bindparam("b_now"),
        ready_at=bindparam("b_ready"),
    )
)
END_ATTEMPT = (
    update(ATTEMPTS)
    .where(
        ATTEMPTS.c.job_id == bindparam("b_job"),
        ATTEMPTS.c.number == bindparam("b_attempt"),
        ATTEMPTS.c.state.in_(ACTIVE_ATTEMPT),
    )
    .values(
        state=bindparam("b_state"),
        finished_at=bindparam("b_now"),
        exit_code=bindparam("b_code"),
        reason=bindparam("b_reason"),
    )
)
JOB_TO_FINISH = (
    select(
        JOBS.c.attempts,
        JOBS.c.state,
        JOBS.c.cancel_requested,
        JOBS.c.failed_attempts,
        JOBS.c.lost_attempts,
        JOBS.c.spec,
    )
    .where(JOBS.c.id == bindparam("b_job"))
    .with_for_update()
)
CANCEL_REQUESTED = (
    select(*ATTEMPTS.c)
    .join(JOBS, JOBS.c.id == ATTEMPTS.c.job_id)
    .where(
        ATTEMPTS.c.server_id == bindparam("b_server"),
        ATTEMPTS.c.state.in_(ACTIVE_ATTEMPT),
        JOBS.c.cancel_requested.is_(True),
        JOBS.c.attempts == ATTEMPTS.c.number,
    )
)
END_JOB = (
    update(JOBS)
    .where(JOBS.c.id == bindparam("b_job"))
    .values(
        state=bindparam("b_state"),
        reason=bindparam("b_reason"),
        exit_code=bindparam("b_code"),
        updated_at=bindparam("b_now"),
        finished_at=bindparam("b_finished"),
        not_before=bindparam("b_not_before"),
        failed_attempts=bindparam("b_failed"),
        lost_attempts=bindparam("b_lost"),
    )
    .returning(*JOBS.c)
)
