"""The jobs repository: submissions (through the group commit), reads, and cancel requests.

A submission is stored QUEUED with its labels, its first event and (when a dispatch writer is
set) its dispatch message, all in one transaction; an idempotency key replays the first job.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from chidori.domain.environments import PREPARING_HOLD, PREPARING_REASON
from chidori.domain.errors import Conflict, NotFound, StoreUnavailable
from chidori.domain.lifecycle import spec_demand
from chidori.domain.records import Attempt, Event, Job, JobQuery, Page
from chidori.domain.spec import JobSpec
from chidori.domain.states import JobState
from chidori.store.database import Database
from chidori.store.group_commit import GroupCommitter, Submission
from chidori.store.job_list import list_jobs
from chidori.store.models import AttemptRow, EventRow, JobRow
from chidori.store.rows import add_event, attempt_record, event_record, job_record, new_job_record
from chidori.store.statements import ACTIVE_JOB, INSERT_EVENT, INSERT_JOBS, INSERT_LABELS

DispatchWriter = Callable[[Session, Mapping[str, int], datetime], None]
"""(session, {job queue: its newest job id in this commit}, now): adds the dispatch messages
inside the submissions' transaction (`chidori.queues.dispatch`)."""


class JobRepository:
    """Jobs: create (group-committed), read, list, cancel."""

    def __init__(self, db: Database, driverless_clusters: frozenset[str] = frozenset()) -> None:
        """`driverless_clusters`: remote clusters, whose drivers run at their service: their
        jobs' demand holds no driver memory (cores still count, against the cluster's
        limits)."""
        self._db = db
        self._driverless = driverless_clusters
        self._dispatch_writer: DispatchWriter | None = None
        self._committer = GroupCommitter(self._write_submissions)
        db.on_dispose(self._committer.close)

    def create_job(
        self,
        spec: JobSpec,
        owner: str,
        *,
        team: str | None = None,
        idempotency_key: str | None = None,
        source: str | None = None,
        channel: str | None = None,
    ) -> tuple[Job, bool]:
        """Store a new QUEUED job with its first event (and its dispatch message, when a
        dispatch writer is set) in one transaction. Returns (job, created).

        With an idempotency key `owner` already used for the same spec, returns the first job
        and False; for a different spec raises Conflict. Keys are per owner: another user's
        key is not seen at all. `channel` marks the door the job came in through (set by the
        server only). Submissions arriving together are committed together (group commit),
        each still answered only once it is durable.
        """
        item = Submission(spec, owner, team, idempotency_key, source, channel)
        try:
            return self._committer.submit(item)
        except IntegrityError as exc:
            return self._replay(item, exc)

    async def create_job_async(
        self,
        spec: JobSpec,
        owner: str,
        *,
        team: str | None = None,
        idempotency_key: str | None = None,
        source: str | None = None,
        channel: str | None = None,
    ) -> tuple[Job, bool]:
        """`create_job` for the event loop: waits for the group commit without a thread (the
        replay after a lost race, which reads the store, takes one)."""
        item = Submission(spec, owner, team, idempotency_key, source, channel)
        try:
            return await self._committer.submit_async(item)
        except IntegrityError as exc:
            return await asyncio.to_thread(self._replay, item, exc)

    def _replay(self, item: Submission, error: IntegrityError) -> tuple[Job, bool]:
        """What a submission whose insert broke a unique constraint answers (both
        `create_job`s): with an idempotency key, another replica stored the same key between
        our check and our insert, so the first job (or Conflict for a different spec);
        without one, `error` itself."""
        key = item.idempotency_key
        if key is None:
            raise error
        with self._db.reading() as session:
            row = session.scalars(
                select(JobRow).where(JobRow.owner == item.owner, JobRow.idempotency_key == key)
            ).first()
            if row is None:
                raise StoreUnavailable("could not store the job; retry")
            if row.spec_hash != item.fingerprint:
                raise Conflict(f"Idempotency-Key {key!r} was already used for a different job")
            return job_record(row), False

    def set_dispatch_writer(self, writer: DispatchWriter | None) -> None:
        """Called inside each submission's transaction to add its dispatch message."""
        self._dispatch_writer = writer

    def _write_submissions(self, batch: Sequence[Submission]) -> None:
        """One transaction for a batch of submissions; sets each one's result or error."""
        now = self._db.now()
        with self._db.writing() as session:
            # Keys are per owner: (owner, key) pairs, looked up by both columns.
            owned = {b.owned_key for b in batch if b.owned_key is not None}
            by_key: dict[tuple[str, str], JobRow] = {}
            if owned:
                found = session.scalars(
                    select(JobRow).where(
                        JobRow.idempotency_key.in_({key for _, key in owned}),
                        JobRow.owner.in_({owner for owner, _ in owned}),
                    )
                )
                by_key = {
                    (row.owner, row.idempotency_key): row
                    for row in found
                    if row.idempotency_key is not None
                }
            fresh: list[Submission] = []
            replays: list[tuple[Submission, JobRow]] = []
            for item in batch:
                owned_key = item.owned_key
                twin = by_key.get(owned_key) if owned_key else None
                if twin is not None:
                    if twin.spec_hash != item.fingerprint:
                        item.error = Conflict(
                            f"Idempotency-Key {item.idempotency_key!r} was already used for a "
                            "different job"
                        )
                    else:
                        replays.append((item, twin))
                    continue
                fresh.append(item)
            # The same owner's key twice in one batch: the second is answered from the first.
            firsts = [i for i in fresh if not self._repeats_key(i, fresh)]
            # Core inserts (one statement per table for the whole batch): the ORM's unit of
            # work costs more CPU than the database does at these rates.
            conn = session.connection()
            values = [self._row_values(item, now, self._driverless) for item in firsts]
            if not values:
                ids = []
            elif self._db.dialect == "postgresql":
                ids = _insert_jobs_pipelined(conn, values)
            else:
                ids = list(conn.execute(INSERT_JOBS, values).scalars())
            labels = [
                {"job_id": job_id, "key": key, "value": value}
                for job_id, item in zip(ids, firsts, strict=True)
                for key, value in item.spec.labels.items()
            ]
            if labels:
                conn.execute(INSERT_LABELS, labels)
            if ids:
                conn.execute(
                    INSERT_EVENT,
                    [
                        {
                            "job_id": job_id,
                            "attempt": None,
                            "time": now,
                            "type": "state",
                            "state": "QUEUED",
                            "actor": item.owner,
                            "reason": "submitted",
                            "source": item.source,
                        }
                        for job_id, item in zip(ids, firsts, strict=True)
                    ],
                )
            if self._dispatch_writer is not None and ids:
                # A message only tells schedulers to look at the store (chidori.queues.dispatch):
                # one per job queue per commit, naming its newest job, wakes them as well as
                # one per job would, at a fraction of the broker traffic.
                newest = {item.spec.queue: job_id for job_id, item in zip(ids, firsts, strict=True)}
                self._dispatch_writer(session, newest, now)
            created: list[Job] = []
            by_new_key: dict[tuple[str, str], tuple[Submission, Job]] = {}
            for job_id, item, row_values in zip(ids, firsts, values, strict=True):
                job = new_job_record(job_id, item.spec, row_values)
                created.append(job)
                item.result = (job, True)
                if item.owned_key is not None:
                    by_new_key[item.owned_key] = (item, job)
            first_ids = {id(item) for item in firsts}
            for item in fresh:
                if id(item) not in first_ids:
                    assert item.owned_key is not None
                    first, twin_job = by_new_key[item.owned_key]
                    if first.fingerprint != item.fingerprint:
                        item.error = Conflict(
                            f"Idempotency-Key {item.idempotency_key!r} was already used for a "
                            "different job"
                        )
                    else:
                        item.result = (twin_job, False)
            for item, row in replays:
                item.result = (job_record(row), False)
        if created:
            self._db.notify_change([job.id for job in created])

    @staticmethod
    def _repeats_key(item: Submission, batch: Sequence[Submission]) -> bool:
        """True if an earlier submission of `batch` carries the same owner's idempotency key."""
        key = item.owned_key
        if key is None:
            return False
        for other in batch:
            if other is item:
                return False
            if other.owned_key == key:
                return True
        return False

    @staticmethod
    def _row_values(
        item: Submission, now: datetime, driverless: frozenset[str] = frozenset()
    ) -> dict[str, Any]:
        spec = item.spec
        demand = spec_demand(spec, hosted_driver=spec.cluster not in driverless)
        return dict(
            name=spec.display_name[:200],
            state=JobState.QUEUED.value,
            kind=spec.kind,
            cluster=spec.cluster,
            queue=spec.queue,
            priority=spec.priority,
            schema_name=spec.schema_name,
            table_name=spec.table_name,
            owner=item.owner,
            team=item.team,
            spec=item.public,
            spec_hash=item.fingerprint,
            idempotency_key=item.idempotency_key,
            channel=item.channel,
            created_at=now,
            updated_at=now,
            attempts=0,
            failed_attempts=0,
            lost_attempts=0,
            cancel_requested=False,
            timeout_seconds=spec.timeout,
            demand_memory_mb=demand.memory_mb,
            demand_cores=demand.cores,
            # Held out of admission until its Python environment is ready
            # (chidori.store.environments).
            not_before=PREPARING_HOLD if spec.needs_environment else None,
            wait_reason=PREPARING_REASON if spec.needs_environment else None,
        )

    def get_job(self, job_id: int) -> Job:
        with self._db.reading() as session:
            row = session.get(JobRow, job_id)
            if row is None:
                raise NotFound(f"job {job_id} not found")
            return job_record(row)

    def list_jobs(self, query: JobQuery) -> Page:
        """Newest first (or oldest first); `before_id` continues a previous page."""
        return list_jobs(self._db, query)

    def list_events(self, job_id: int) -> list[Event]:
        with self._db.reading() as session:
            if session.get(JobRow, job_id) is None:
                raise NotFound(f"job {job_id} not found")
            rows = session.scalars(
                select(EventRow).where(EventRow.job_id == job_id).order_by(EventRow.id)
            )
            return [event_record(row) for row in rows]

    def list_attempts(self, job_id: int) -> list[Attempt]:
        with self._db.reading() as session:
            if session.get(JobRow, job_id) is None:
                raise NotFound(f"job {job_id} not found")
            rows = session.scalars(
                select(AttemptRow).where(AttemptRow.job_id == job_id).order_by(AttemptRow.number)
            )
            return [attempt_record(row) for row in rows]

    def request_cancel(self, job_id: int, actor: str, source: str | None = None) -> Job:
        """Cancel a job: a QUEUED job is CANCELLED at once; an admitted or running one is
        flagged, and the replica hosting its driver stops it. Finished jobs are left alone."""
        now = self._db.now()
        with self._db.writing() as session:
            row = session.get(JobRow, job_id, with_for_update=True)
            if row is None:
                raise NotFound(f"job {job_id} not found")
            if row.state == JobState.QUEUED.value:
                row.state = JobState.CANCELLED.value
                row.reason = f"cancelled by {actor}"
                row.finished_at = now
                row.updated_at = now
                row.cancel_requested = True
                add_event(
                    session,
                    now,
                    job_id,
                    "state",
                    actor,
                    state="CANCELLED",
                    reason=row.reason,
                    source=source,
                )
            elif row.state in ACTIVE_JOB and not row.cancel_requested:
                row.cancel_requested = True
                row.updated_at = now
                add_event(
                    session,
                    now,
                    job_id,
                    "cancel_requested",
                    actor,
                    reason=f"cancel requested by {actor}",
                    attempt=row.attempts,
                    source=source,
                )
            session.flush()
            job = job_record(row)
        # No wake-up for the scheduler: the one that records an end admits right after it
        # (a driver's exit, or the scheduler's own step).
        self._db.notify_change([job_id], wake_scheduler=False)
        return job


def _insert_jobs_pipelined(conn: Connection, values: list[dict[str, Any]]) -> list[int]:
    """Insert jobs on PostgreSQL and return their ids, in order: one short INSERT sent for
    every row in one pipeline (psycopg's `executemany`). SQLAlchemy's single multi-row
    statement is long and different for each batch size, so psycopg parsed it anew for every
    batch: a tenth of the server's CPU at 1,000 submissions a second."""
    from psycopg.types.json import Json

    columns = tuple(values[0])
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    cursor.executemany(
        _pg_insert_job(columns),
        [tuple(Json(v) if k == "spec" else v for k, v in row.items()) for row in values],
        returning=True,
    )
    ids = []
    while True:
        ids.append(int(cursor.fetchone()[0]))
        if not cursor.nextset():
            return ids


@functools.cache
def _pg_insert_job(columns: tuple[str, ...]) -> str:
    names = ", ".join(f'"{c}"' for c in columns)
    marks = ", ".join(["%s"] * len(columns))
    return f"INSERT INTO jobs ({names}) VALUES ({marks}) RETURNING id"
