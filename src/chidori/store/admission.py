"""Admission in the store: limits, queues, what is reserved, and one atomic admit step.

Admitting runs in one write transaction that is serialised across every replica sharing the
database (a PostgreSQL advisory lock; SQLite's BEGIN IMMEDIATE), and reads what is reserved
from the jobs table itself in that transaction, so limits hold across replicas at every moment.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select, text, update
from sqlalchemy.orm import Session

from chidori.admission import Candidate, Decision, Resources, Usage, admit
from chidori.limits import DEFAULT_QUEUE, LimitsDoc, QueueDoc
from chidori.records import Claim, Server
from chidori.states import ACTIVE_JOB_STATES, JobState
from chidori.store.models import JobRow, QueueRow, SettingRow
from chidori.store.sql import Store, claim_in_session

LIMITS_KEY = "limits"
_ADMISSION_LOCK = 4242002
_ACTIVE = [s.value for s in ACTIVE_JOB_STATES]


@dataclass(frozen=True)
class QueueStats:
    name: str
    config: QueueDoc
    depth: int
    running: Resources
    oldest_queued_at: datetime | None


def _usage(session: Session) -> Usage:
    rows = session.execute(
        select(
            JobRow.queue,
            JobRow.cluster,
            func.count(),
            func.coalesce(func.sum(JobRow.demand_memory_mb), 0),
            func.coalesce(func.sum(JobRow.demand_cores), 0),
        )
        .where(JobRow.state.in_(_ACTIVE))
        .group_by(JobRow.queue, JobRow.cluster)
    ).all()
    total = Resources()
    by_cluster: dict[str, Resources] = {}
    by_queue: dict[str, Resources] = {}
    for queue, cluster, count, memory, cores in rows:
        held = Resources(int(count), int(memory), int(cores))
        total = total + held
        by_cluster[cluster] = by_cluster.get(cluster, Resources()) + held
        by_queue[queue] = by_queue.get(queue, Resources()) + held
    return Usage(total, by_cluster, by_queue)


class AdmissionStore:
    def __init__(self, store: Store, default_limits: LimitsDoc) -> None:
        self._store = store
        self._default_limits = default_limits
        self._explained_up_to = 0

    # ---- limits and queues ------------------------------------------------------------------

    def _limits(self, session: Session) -> LimitsDoc:
        row = session.get(SettingRow, LIMITS_KEY)
        return LimitsDoc.model_validate(row.value) if row is not None else self._default_limits

    def get_limits(self) -> LimitsDoc:
        with self._store.reading() as session:
            return self._limits(session)

    def put_limits(self, limits: LimitsDoc, by: str) -> LimitsDoc:
        value = limits.model_dump(mode="json")
        now = self._store.now()
        with self._store.writing() as session:
            row = session.get(SettingRow, LIMITS_KEY)
            if row is None:
                session.add(SettingRow(key=LIMITS_KEY, value=value, updated_at=now, updated_by=by))
            else:
                row.value, row.updated_at, row.updated_by = value, now, by
        self._store.notify_change()
        return limits

    def _queues(self, session: Session) -> dict[str, QueueDoc]:
        queues = {DEFAULT_QUEUE: QueueDoc()}
        for row in session.scalars(select(QueueRow)):
            queues[row.name] = QueueDoc(
                priority=row.priority,
                weight=row.weight,
                max_running_jobs=row.max_running_jobs,
                max_memory=f"{row.max_memory_mb}m" if row.max_memory_mb else None,
                max_cores=row.max_cores,
            )
        return queues

    def queues(self) -> dict[str, QueueDoc]:
        with self._store.reading() as session:
            return self._queues(session)

    def put_queue(self, name: str, doc: QueueDoc) -> QueueDoc:
        now = self._store.now()
        values: dict[str, Any] = {
            "priority": doc.priority,
            "weight": doc.weight,
            "max_running_jobs": doc.max_running_jobs,
            "max_memory_mb": doc.limit().max_memory_mb,
            "max_cores": doc.max_cores,
            "updated_at": now,
        }
        with self._store.writing() as session:
            row = session.get(QueueRow, name)
            if row is None:
                session.add(QueueRow(name=name, created_at=now, **values))
            else:
                for key, value in values.items():
                    setattr(row, key, value)
        self._store.notify_change()
        return doc

    def queue_stats(self) -> list[QueueStats]:
        with self._store.reading() as session:
            configs = self._queues(session)
            usage = _usage(session)
            waiting = {
                queue: (int(count), oldest)
                for queue, count, oldest in session.execute(
                    select(JobRow.queue, func.count(), func.min(JobRow.created_at))
                    .where(JobRow.state == JobState.QUEUED.value)
                    .group_by(JobRow.queue)
                )
            }
        names = sorted(set(configs) | set(waiting) | set(usage.by_queue))
        return [
            QueueStats(
                name,
                configs.get(name, QueueDoc()),
                waiting.get(name, (0, None))[0],
                usage.by_queue.get(name, Resources()),
                waiting.get(name, (0, None))[1],
            )
            for name in names
        ]

    def usage(self) -> tuple[Usage, int]:
        """What active jobs hold now, and how many jobs wait."""
        with self._store.reading() as session:
            waiting = session.scalar(
                select(func.count())
                .select_from(JobRow)
                .where(JobRow.state == JobState.QUEUED.value)
            )
            return _usage(session), int(waiting or 0)

    def servers(self) -> list[Server]:
        return self._store.list_servers()

    # ---- the admit step ---------------------------------------------------------------------

    def admit(
        self,
        server_id: str,
        host: str,
        clusters: Sequence[str],
        lease_seconds: float,
        per_queue: int = 64,
    ) -> list[Claim]:
        """Admit every waiting job that fits now (see `chidori.admission`), each with a new
        attempt owned by `server_id`, and record why the others wait. One transaction."""
        now = self._store.now()
        with self._store.writing() as session:
            if self._store.dialect == "postgresql":
                session.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADMISSION_LOCK}
                )
            limits = self._limits(session)
            usage = _usage(session)
            cap = limits.max_running_jobs
            if cap is not None and usage.total.jobs >= cap:
                # Nothing can start: skip reading candidates; just explain the arrivals since
                # the last step (an id range, so a long queue is not rescanned every time).
                newest = session.scalar(select(func.max(JobRow.id))) or 0
                session.execute(
                    update(JobRow)
                    .where(
                        JobRow.id > self._explained_up_to,
                        JobRow.id <= newest,
                        JobRow.state == JobState.QUEUED.value,
                        JobRow.wait_reason.is_(None),
                    )
                    .values(wait_reason=f"global running-jobs limit {cap} reached")
                    .execution_options(synchronize_session=False)
                )
                self._explained_up_to = newest
                return []
            self._explained_up_to = 0  # reasons are per job again below; start over next time
            queues = self._queues(session)
            queued = self._candidates(session, list(queues), clusters, now, per_queue)
            if not queued:
                return []
            decision = admit(
                [candidate for candidate, _ in queued],
                usage,
                limits.limits(),
                {name: doc.config(name) for name, doc in queues.items()},
            )
            claims = [
                claim
                for job_id in decision.admitted
                if (claim := claim_in_session(session, job_id, server_id, host, lease_seconds, now))
            ]
            self._record_reasons(session, decision, dict((c.job_id, r) for c, r in queued))
        if claims:
            self._store.notify_change([c.job.id for c in claims])
        return claims

    @staticmethod
    def _candidates(
        session: Session,
        names: Sequence[str],
        clusters: Sequence[str],
        now: datetime,
        per_queue: int,
    ) -> list[tuple[Candidate, str | None]]:
        """The first `per_queue` waiting jobs of every queue, with their current wait reason.
        (Jobs can only be submitted to configured queues, so `names` covers them all; each
        lookup is a walk of the (queue, state, priority, id) index.)"""
        ready = [
            JobRow.state == JobState.QUEUED.value,
            JobRow.cluster.in_(list(clusters)),
            or_(JobRow.not_before.is_(None), JobRow.not_before <= now),
        ]
        found: list[tuple[Candidate, str | None]] = []
        for name in names:
            rows = session.execute(
                select(
                    JobRow.id,
                    JobRow.cluster,
                    JobRow.priority,
                    JobRow.demand_memory_mb,
                    JobRow.demand_cores,
                    JobRow.wait_reason,
                )
                .where(*ready, JobRow.queue == name)
                .order_by(JobRow.priority.desc(), JobRow.id)
                .limit(per_queue)
            ).all()
            found += [
                (Candidate(job_id, name, cluster, priority, Resources(1, memory, cores)), reason)
                for job_id, cluster, priority, memory, cores, reason in rows
            ]
        return found

    @staticmethod
    def _record_reasons(
        session: Session, decision: Decision, previous: dict[int, str | None]
    ) -> None:
        # Only what changed is written: a full queue must not rewrite every job each step.
        for job_id, reason in decision.waiting.items():
            if previous.get(job_id) != reason:
                session.execute(
                    update(JobRow)
                    .where(JobRow.id == job_id, JobRow.state == JobState.QUEUED.value)
                    .values(wait_reason=reason)
                    .execution_options(synchronize_session=False)
                )
