"""What admission reads: the settings (limits, queues, warm pool sizes), what active jobs and
warm drivers hold, and the statements for both, shared by the admission store (settings,
warm-driver registry) and the admit step. Parsed settings are kept while the stored value is
unchanged: the admit step reads them after every job.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from sqlalchemy import Connection, Table, bindparam, func, select, text, update

from chidori.domain.admission import Resources, Usage
from chidori.domain.limits import DEFAULT_QUEUE, LimitsDoc, QueueDoc
from chidori.domain.states import ACTIVE_JOB_STATES, JobState
from chidori.domain.warm_planning import WarmDriver, WarmState
from chidori.store.database import LeanConnection
from chidori.store.models import QueueRow, SettingRow, WarmDriverRow
from chidori.store.statements import JOBS, run

LIMITS_KEY = "limits"
WARM_POOL_KEY = "warm_pool"
ADMISSION_LOCK = 4242002
_ACTIVE = [s.value for s in ACTIVE_JOB_STATES]
_SETTINGS = cast(Table, SettingRow.__table__)
_QUEUES = cast(Table, QueueRow.__table__)
_WARM = cast(Table, WarmDriverRow.__table__)
# The admit step runs after every finished job: its statements are built once and run lean
# (chidori.store.statements.run).
LOCK_ADMISSION = text("SELECT pg_advisory_xact_lock(:key)")
COUNT_ACTIVE = select(func.count()).select_from(JOBS).where(JOBS.c.state.in_(_ACTIVE))
NEWEST_JOB = select(func.max(JOBS.c.id))
ADMISSION_SETTINGS = select(_SETTINGS.c.key, _SETTINGS.c.value).where(
    _SETTINGS.c.key.in_([LIMITS_KEY, WARM_POOL_KEY])
)
LIMITS_SETTING = select(_SETTINGS.c.value).where(_SETTINGS.c.key == LIMITS_KEY)
USAGE_JOBS = (
    select(
        JOBS.c.queue,
        JOBS.c.cluster,
        func.count(),
        func.coalesce(func.sum(JOBS.c.demand_memory_mb), 0),
        func.coalesce(func.sum(JOBS.c.demand_cores), 0),
    )
    .where(JOBS.c.state.in_(_ACTIVE))
    .group_by(JOBS.c.queue, JOBS.c.cluster)
)
USAGE_WARM = select(
    _WARM.c.cluster,
    func.count(),
    func.coalesce(func.sum(_WARM.c.memory_mb), 0),
    func.coalesce(func.sum(_WARM.c.cores), 0),
).group_by(_WARM.c.cluster)
QUEUE_CONFIGS = select(
    _QUEUES.c.name,
    _QUEUES.c.priority,
    _QUEUES.c.weight,
    _QUEUES.c.max_running_jobs,
    _QUEUES.c.max_memory_mb,
    _QUEUES.c.max_cores,
).order_by(_QUEUES.c.name)
EXPLAIN_FULL = (
    update(JOBS)
    .where(
        JOBS.c.id > bindparam("b_from"),
        JOBS.c.id <= bindparam("b_to"),
        JOBS.c.state == JobState.QUEUED.value,
        JOBS.c.wait_reason.is_(None),
    )
    .values(wait_reason=bindparam("b_reason"))
)
SET_WAIT_REASON = (
    update(JOBS)
    .where(JOBS.c.id == bindparam("b_job_id"), JOBS.c.state == JobState.QUEUED.value)
    .values(wait_reason=bindparam("b_reason"))
)


def pool_sizes(value: Mapping[str, Any] | None) -> dict[str, int]:
    """Warm pool sizes an admin set, from their stored setting."""
    return {str(k): int(v) for k, v in (value or {}).items()}


def usage_of(conn: Connection | LeanConnection) -> tuple[Usage, int]:
    """What active jobs and warm drivers hold, and how many warm drivers there are."""
    total = Resources()
    by_cluster: dict[str, Resources] = {}
    by_queue: dict[str, Resources] = {}
    for queue, cluster, count, memory, cores in run(conn, USAGE_JOBS):
        held = Resources(int(count), int(memory), int(cores))
        total = total + held
        by_cluster[cluster] = by_cluster.get(cluster, Resources()) + held
        by_queue[queue] = by_queue.get(queue, Resources()) + held
    # Warm drivers hold a driver's memory and cores and a slot, like running jobs.
    warm = 0
    for cluster, count, memory, cores in run(conn, USAGE_WARM):
        held = Resources(int(count), int(memory), int(cores))
        warm += held.jobs
        total = total + held
        by_cluster[cluster] = by_cluster.get(cluster, Resources()) + held
    return Usage(total, by_cluster, by_queue), warm


def warm_record(row: WarmDriverRow) -> WarmDriver:
    return WarmDriver(
        row.id,
        row.server_id,
        row.cluster,
        WarmState(row.state),
        Resources(1, row.memory_mb, row.cores),
        row.pid,
        row.created_at,
    )


class ParsedSettings:
    """Limits and queue settings as read from the store, parsed again only when they change."""

    def __init__(self, default_limits: LimitsDoc) -> None:
        self._default_limits = default_limits
        self._limits: tuple[Any, LimitsDoc] | None = None
        self._queues: tuple[list[tuple[Any, ...]], dict[str, QueueDoc]] | None = None

    def limits(self, value: Any) -> LimitsDoc:
        """The stored limits setting (`value`, None when never set) as a document."""
        if value is None:
            return self._default_limits
        cached = self._limits
        if cached is None or cached[0] != value:
            cached = self._limits = (value, LimitsDoc.model_validate(value))
        return cached[1]

    def read_limits(self, conn: Connection | LeanConnection) -> LimitsDoc:
        return self.limits(run(conn, LIMITS_SETTING).scalar())

    def read_queues(self, conn: Connection | LeanConnection) -> dict[str, QueueDoc]:
        rows = [tuple(row) for row in run(conn, QUEUE_CONFIGS)]
        cached = self._queues
        if cached is not None and cached[0] == rows:
            return dict(cached[1])
        queues = {DEFAULT_QUEUE: QueueDoc()}
        for name, priority, weight, max_jobs, max_memory_mb, max_cores in rows:
            queues[str(name)] = QueueDoc(
                priority=priority,
                weight=weight,
                max_running_jobs=max_jobs,
                max_memory=f"{max_memory_mb}m" if max_memory_mb else None,
                max_cores=max_cores,
            )
        self._queues = (rows, queues)
        return dict(queues)
