"""Row mappers: database rows to the frozen records the store hands out
(`chidori.domain.records`), and the event row every ORM write adds."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Row
from sqlalchemy.orm import Session

from chidori.domain.admission import Resources
from chidori.domain.records import Attempt, Event, Job
from chidori.domain.spec import JobSpec
from chidori.domain.states import AttemptState, JobState
from chidori.store.models import AttemptRow, EventRow, JobRow


def job_record(row: JobRow | Row[Any]) -> Job:
    return Job(
        id=row.id,
        name=row.name,
        state=JobState(row.state),
        spec=JobSpec.from_stored(row.spec),
        owner=row.owner,
        team=row.team,
        created_at=row.created_at,
        updated_at=row.updated_at,
        admitted_at=row.admitted_at,
        start_type=row.start_type,
        start_note=row.start_note,
        ready_at=row.ready_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        attempts=row.attempts,
        reason=row.reason,
        spark_app_id=row.spark_app_id,
        exit_code=row.exit_code,
        cancel_requested=row.cancel_requested,
        demand=Resources(1, row.demand_memory_mb, row.demand_cores),
        waiting_reason=row.wait_reason if row.state == JobState.QUEUED.value else None,
        channel=row.channel,
        progress=job_progress(row.progress, row.attempts),
    )


def job_progress(stored: dict[str, Any] | None, attempts: int) -> dict[str, Any] | None:
    """The job's copy of its current attempt's progress counts (None if the copy is an
    earlier attempt's: a retry has started and has none yet)."""
    if not isinstance(stored, dict) or stored.get("attempt") != attempts:
        return None
    return {k: v for k, v in stored.items() if k != "attempt"}


def new_job_record(job_id: int, spec: JobSpec, values: dict[str, Any]) -> Job:
    """The record of a job just inserted with `values` (no row to read back, no spec to
    validate again)."""
    return Job(
        id=job_id,
        name=values["name"],
        state=JobState.QUEUED,
        spec=spec,
        owner=values["owner"],
        team=values["team"],
        created_at=values["created_at"],
        updated_at=values["updated_at"],
        admitted_at=None,
        started_at=None,
        finished_at=None,
        attempts=0,
        reason=None,
        spark_app_id=None,
        exit_code=None,
        cancel_requested=False,
        demand=Resources(1, values["demand_memory_mb"], values["demand_cores"]),
        channel=values["channel"],
    )


def attempt_record(row: AttemptRow | Row[Any]) -> Attempt:
    return Attempt(
        job_id=row.job_id,
        number=row.number,
        state=AttemptState(row.state),
        server_id=row.server_id,
        host=row.host,
        pid=row.pid,
        log_path=row.log_path,
        started_at=row.started_at,
        finished_at=row.finished_at,
        lease_expires_at=row.lease_expires_at,
        spark_app_id=row.spark_app_id,
        exit_code=row.exit_code,
        reason=row.reason,
        start_type=row.start_type,
        start_note=row.start_note,
        ready_at=row.ready_at,
        executors=row.executors,
        progress=row.progress,
        remote_run_id=row.remote_run_id,
        remote_url=row.remote_url,
    )


def event_record(row: EventRow) -> Event:
    return Event(
        id=row.id,
        job_id=row.job_id,
        attempt=row.attempt,
        time=row.time,
        type=row.type,
        state=row.state,
        actor=row.actor,
        reason=row.reason,
        source=row.source,
    )


def add_event(
    session: Session,
    time: datetime,
    job_id: int,
    type_: str,
    actor: str,
    *,
    state: str | None = None,
    reason: str | None = None,
    attempt: int | None = None,
    source: str | None = None,
) -> None:
    """Add one event row to the caller's transaction (for ORM writes; the per-job statements
    insert theirs with `statements.INSERT_EVENT`)."""
    session.add(
        EventRow(
            job_id=job_id,
            attempt=attempt,
            time=time,
            type=type_,
            state=state,
            actor=actor,
            reason=reason,
            source=source,
        )
    )
