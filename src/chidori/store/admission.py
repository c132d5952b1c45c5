"""Admission in the store: limits, queues, what is reserved, and one atomic admit step.

Admitting runs in one write transaction that is serialised across every replica sharing the
database (a PostgreSQL advisory lock; SQLite's BEGIN IMMEDIATE), and reads what is reserved
from the jobs table itself in that transaction, so limits hold across replicas at every moment.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Connection, Select, Table, bindparam, delete, func, or_, select, text, update
from sqlalchemy.orm import Session

from chidori.domain.admission import (
    Candidate,
    Decision,
    Resources,
    Usage,
    WarmHold,
    admit,
    room_for,
    warm_to_retire,
)
from chidori.domain.limits import DEFAULT_QUEUE, LimitsDoc, QueueDoc
from chidori.domain.records import Claim, Ending, Server
from chidori.domain.spec import JobSpec
from chidori.domain.states import ACTIVE_JOB_STATES, JobState
from chidori.domain.warm import WarmPoolConfig, cold_reason, warm_demand
from chidori.store.attempts import AttemptRepository, claim_in_session
from chidori.store.database import Database
from chidori.store.models import (
    JobRow,
    QueueRow,
    ServerRow,
    SettingRow,
    WarmDriverRow,
)
from chidori.store.servers import ServerRegistry
from chidori.store.statements import JOBS, run

LIMITS_KEY = "limits"
WARM_POOL_KEY = "warm_pool"
_ADMISSION_LOCK = 4242002
_ACTIVE = [s.value for s in ACTIVE_JOB_STATES]
_SETTINGS = cast(Table, SettingRow.__table__)
_QUEUES = cast(Table, QueueRow.__table__)
_WARM = cast(Table, WarmDriverRow.__table__)
# The admit step runs after every finished job: its statements are built once (see
# chidori.store.statements) and run on the session's connection.
_LOCK_ADMISSION = text("SELECT pg_advisory_xact_lock(:key)")
_COUNT_ACTIVE = select(func.count()).select_from(JOBS).where(JOBS.c.state.in_(_ACTIVE))
_NEWEST_JOB = select(func.max(JOBS.c.id))
_ADMISSION_SETTINGS = select(_SETTINGS.c.key, _SETTINGS.c.value).where(
    _SETTINGS.c.key.in_([LIMITS_KEY, WARM_POOL_KEY])
)
_LIMITS_SETTING = select(_SETTINGS.c.value).where(_SETTINGS.c.key == LIMITS_KEY)
_USAGE_JOBS = (
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
_USAGE_WARM = select(
    _WARM.c.cluster,
    func.count(),
    func.coalesce(func.sum(_WARM.c.memory_mb), 0),
    func.coalesce(func.sum(_WARM.c.cores), 0),
).group_by(_WARM.c.cluster)
_QUEUE_CONFIGS = select(
    _QUEUES.c.name,
    _QUEUES.c.priority,
    _QUEUES.c.weight,
    _QUEUES.c.max_running_jobs,
    _QUEUES.c.max_memory_mb,
    _QUEUES.c.max_cores,
).order_by(_QUEUES.c.name)
_EXPLAIN_FULL = (
    update(JOBS)
    .where(
        JOBS.c.id > bindparam("b_from"),
        JOBS.c.id <= bindparam("b_to"),
        JOBS.c.state == JobState.QUEUED.value,
        JOBS.c.wait_reason.is_(None),
    )
    .values(wait_reason=bindparam("b_reason"))
)
_SET_WAIT_REASON = (
    update(JOBS)
    .where(JOBS.c.id == bindparam("b_job_id"), JOBS.c.state == JobState.QUEUED.value)
    .values(wait_reason=bindparam("b_reason"))
)


@dataclass(frozen=True)
class WarmPlan:
    """This server's warm pools (from the config; sizes an admin set at run time win) and
    the conf their drivers start with, by cluster."""

    pools: Mapping[str, WarmPoolConfig]
    fixed_conf: Mapping[str, Mapping[str, str]]


@dataclass(frozen=True)
class WarmDriver:
    id: str
    server_id: str
    cluster: str
    state: str
    held: Resources
    pid: int | None
    created_at: datetime


@dataclass(frozen=True)
class AdmitResult:
    claims: list[Claim]
    warm_to_start: list[tuple[str, str]]  # (warm driver id, cluster) reserved on this server
    full: bool = False  # the running-jobs limit is reached: nothing can start until one ends


def _warm(row: WarmDriverRow) -> WarmDriver:
    return WarmDriver(
        row.id, row.server_id, row.cluster, row.state, _hold(row).held, row.pid, row.created_at
    )


def _hold(row: WarmDriverRow) -> WarmHold:
    return WarmHold(row.id, row.cluster, Resources(1, row.memory_mb, row.cores))


@dataclass(frozen=True)
class QueueStats:
    name: str
    config: QueueDoc
    depth: int
    running: Resources
    oldest_queued_at: datetime | None


def _pool_sizes(value: Mapping[str, Any] | None) -> dict[str, int]:
    """Warm pool sizes an admin set, from their stored setting."""
    return {str(k): int(v) for k, v in (value or {}).items()}


def _usage(conn: Connection) -> tuple[Usage, int]:
    """What active jobs and warm drivers hold, and how many warm drivers there are."""
    total = Resources()
    by_cluster: dict[str, Resources] = {}
    by_queue: dict[str, Resources] = {}
    for queue, cluster, count, memory, cores in run(conn, _USAGE_JOBS):
        held = Resources(int(count), int(memory), int(cores))
        total = total + held
        by_cluster[cluster] = by_cluster.get(cluster, Resources()) + held
        by_queue[queue] = by_queue.get(queue, Resources()) + held
    # Warm drivers hold a driver's memory and cores and a slot, like running jobs.
    warm = 0
    for cluster, count, memory, cores in run(conn, _USAGE_WARM):
        held = Resources(int(count), int(memory), int(cores))
        warm += held.jobs
        total = total + held
        by_cluster[cluster] = by_cluster.get(cluster, Resources()) + held
    return Usage(total, by_cluster, by_queue), warm


class AdmissionStore:
    def __init__(self, store: Database, default_limits: LimitsDoc) -> None:
        self._store = store
        # Stateless views over the same database: the admit step ends attempts in its own
        # transaction, and counts the servers that are up.
        self._attempts = AttemptRepository(store)
        self._servers = ServerRegistry(store)
        self._default_limits = default_limits
        self._explained_up_to = 0
        self._cap_read: tuple[float, int | None] | None = None
        self._parsed_limits: tuple[Any, LimitsDoc] | None = None
        self._parsed_queues: tuple[list[tuple[Any, ...]], dict[str, QueueDoc]] | None = None
        self._candidate_statements: dict[tuple[tuple[str, ...], int], Select[Any]] = {}

    # ---- limits and queues ------------------------------------------------------------------

    def _limits(self, session: Session) -> LimitsDoc:
        return self._parse_limits(session.connection().execute(_LIMITS_SETTING).scalar())

    def _parse_limits(self, value: Any) -> LimitsDoc:
        if value is None:
            return self._default_limits
        # Parsed again only when the stored value changed (the admit step reads it each time).
        cached = self._parsed_limits
        if cached is None or cached[0] != value:
            cached = self._parsed_limits = (value, LimitsDoc.model_validate(value))
        return cached[1]

    def get_limits(self) -> LimitsDoc:
        with self._store.reading() as session:
            return self._limits(session)

    def put_limits(self, limits: LimitsDoc, by: str) -> LimitsDoc:
        self._cap_read = None  # this replica's change applies at once
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
        rows = [tuple(row) for row in run(session.connection(), _QUEUE_CONFIGS)]
        cached = self._parsed_queues
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
        self._parsed_queues = (rows, queues)
        return dict(queues)

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
            usage, _ = _usage(session.connection())
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
            return _usage(session.connection())[0], int(waiting or 0)

    def servers(self) -> list[Server]:
        return self._servers.list_servers()

    # ---- warm drivers ------------------------------------------------------------------------

    def _warm_sizes(self, session: Session) -> dict[str, int]:
        row = session.get(SettingRow, WARM_POOL_KEY)
        return _pool_sizes(row.value if row is not None else None)

    def warm_sizes(self) -> dict[str, int]:
        """Warm pool sizes an admin set at run time, by cluster (they win over the config)."""
        with self._store.reading() as session:
            return self._warm_sizes(session)

    def put_warm_size(self, cluster: str, size: int | None, by: str) -> dict[str, int]:
        """Set (or, with None, forget) the run-time pool size of `cluster`."""
        now = self._store.now()
        with self._store.writing() as session:
            sizes = self._warm_sizes(session)
            if size is None:
                sizes.pop(cluster, None)
            else:
                sizes[cluster] = size
            row = session.get(SettingRow, WARM_POOL_KEY)
            if row is None:
                session.add(
                    SettingRow(key=WARM_POOL_KEY, value=sizes, updated_at=now, updated_by=by)
                )
            else:
                row.value, row.updated_at, row.updated_by = dict(sizes), now, by
        self._store.notify_change()
        return sizes

    def warm_drivers(self, server_id: str | None = None) -> list[WarmDriver]:
        with self._store.reading() as session:
            query = select(WarmDriverRow).order_by(WarmDriverRow.created_at)
            if server_id is not None:
                query = query.where(WarmDriverRow.server_id == server_id)
            return [_warm(row) for row in session.scalars(query)]

    def set_warm_state(self, warm_id: str, state: str, pid: int | None = None) -> bool:
        """Move a warm driver from starting to idle (or note its pid). False if its row is gone
        (a job took it over, or another replica reaped it)."""
        values: dict[str, Any] = {"state": state}
        if pid is not None:
            values["pid"] = pid
        with self._store.writing() as session:
            result = session.execute(
                update(WarmDriverRow)
                .where(WarmDriverRow.id == warm_id, WarmDriverRow.state != "retiring")
                .values(**values)
                .execution_options(synchronize_session=False)
            )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    def drop_warm(self, warm_ids: Sequence[str]) -> None:
        """Forget warm drivers whose processes are gone: their reservations are free again."""
        if not warm_ids:
            return
        with self._store.writing() as session:
            session.execute(
                delete(WarmDriverRow)
                .where(WarmDriverRow.id.in_(list(warm_ids)))
                .execution_options(synchronize_session=False)
            )
        self._store.notify_change()

    def reap_warm(self, lease_seconds: float, all_servers_but: str | None = None) -> int:
        """Drop the warm drivers of servers that stopped or stopped renewing their heartbeat
        (their watchdog has stopped the processes). With `all_servers_but`, every server's but
        that one (a database only one server uses: whatever else is recorded is stale)."""
        cutoff = self._store.now() - timedelta(seconds=lease_seconds)
        with self._store.writing() as session:
            if all_servers_but is not None:
                stale = delete(WarmDriverRow).where(WarmDriverRow.server_id != all_servers_but)
            else:
                live = select(ServerRow.id).where(
                    ServerRow.stopped_at.is_(None), ServerRow.heartbeat_at >= cutoff
                )
                stale = delete(WarmDriverRow).where(WarmDriverRow.server_id.not_in(live))
            result = session.execute(stale.execution_options(synchronize_session=False))
        count = int(result.rowcount)  # type: ignore[attr-defined]
        if count:
            self._store.notify_change()
        return count

    # ---- the admit step ---------------------------------------------------------------------

    def admit(
        self,
        server_id: str,
        host: str,
        clusters: Sequence[str],
        lease_seconds: float,
        per_queue: int = 64,
        warm: WarmPlan | None = None,
        ending: Ending | None = None,
    ) -> AdmitResult:
        """Admit every waiting job that fits now (see `chidori.domain.admission`), each with a new
        attempt owned by `server_id`, and record why the others wait. With a `warm` plan, hand
        jobs to this server's idle warm drivers, retire warm drivers (anyone's) that stand in
        a waiting job's way, and top this server's pools up when no job waits for room.
        With an `ending`, first record that attempt's end (the capacity it frees is used at
        once, and a driver's exit costs one transaction, not two). One transaction."""
        try:
            return self._admit(server_id, host, clusters, lease_seconds, per_queue, warm, ending)
        finally:
            if ending is not None:
                # Told even when the admit step failed after the end committed; harmless if
                # it did not (listeners re-read the store).
                self._store.notify_change([ending.job_id], wake_scheduler=False)

    def _admit(
        self,
        server_id: str,
        host: str,
        clusters: Sequence[str],
        lease_seconds: float,
        per_queue: int,
        warm: WarmPlan | None,
        ending: Ending | None,
    ) -> AdmitResult:
        if ending is None and self._still_full():
            return AdmitResult([], [], full=True)
        now = self._store.now()
        warm = warm or WarmPlan({}, {})
        with self._store.writing() as session:
            conn = session.connection()
            if self._store.dialect == "postgresql":
                conn.execute(_LOCK_ADMISSION, {"key": _ADMISSION_LOCK})
            if ending is not None:
                self._attempts.finish_in(conn, ending)
            settings = {key: value for key, value in run(conn, _ADMISSION_SETTINGS)}
            limits = self._parse_limits(settings.get(LIMITS_KEY))
            usage, warm_count = _usage(conn)
            warm_rows = list(session.scalars(select(WarmDriverRow))) if warm_count else []
            cap = limits.max_running_jobs
            if cap is not None and usage.total.jobs - len(warm_rows) >= cap:
                self._explain_full(conn, cap)
                return AdmitResult([], [], full=True)
            self._explained_up_to = 0  # reasons are per job again below; start over next time
            queues = self._queues(session)
            sizes = {
                **{c: p.size for c, p in warm.pools.items()},
                **_pool_sizes(settings.get(WARM_POOL_KEY)),
            }
            pool_clusters = {c for c in warm.pools if sizes.get(c, 0) > 0}
            idle = [
                row
                for row in warm_rows
                if row.server_id == server_id and row.state == "idle" and row.cluster in warm.pools
            ]
            # With only a few slots free, only a few jobs can start: look at the head of each
            # queue first, and at the whole window only if the head admits fewer than that.
            free = None if cap is None or warm_rows else cap - usage.total.jobs
            windows = [per_queue]
            if free is not None and 4 * free < per_queue:
                windows.insert(0, max(8, 4 * free))
            for window in windows:
                queued = self._candidates(conn, list(queues), clusters, now, window)
                candidates, handed, notes = self._hand_to_warm(
                    session, [c for c, _ in queued], idle, warm
                )
                decision = admit(
                    candidates,
                    usage,
                    limits.limits(),
                    {name: doc.config(name) for name, doc in queues.items()},
                )
                heads = Counter(c.queue for c in candidates)
                if len(decision.admitted) >= (free or 0) or max(heads.values(), default=0) < window:
                    break
            admitted = set(decision.admitted)
            notes.update(
                self._cold_notes(
                    session,
                    [c for c in candidates if c.job_id in admitted],
                    handed,
                    notes,
                    pool_clusters,
                    warm,
                )
            )
            claims: list[Claim] = []
            taken: set[str] = set()
            for job_id in decision.admitted:
                warm_id = handed.get(job_id)
                claim = claim_in_session(
                    session, job_id, server_id, host, lease_seconds, now,
                    "warm" if warm_id else "cold", None if warm_id else notes.get(job_id),
                    warm_id,
                )  # fmt: skip
                if claim is None:
                    continue
                claims.append(claim)
                if warm_id is not None:
                    # The job holds what the warm driver held: one reservation, handed over.
                    session.execute(delete(WarmDriverRow).where(WarmDriverRow.id == warm_id))
                    taken.add(warm_id)
            self._record_reasons(conn, decision, dict((c.job_id, r) for c, r in queued))
            left = [r for r in warm_rows if r.id not in taken]
            self._shrink(server_id, sizes, left)
            left = [r for r in left if r.state != "retiring"]
            started: list[tuple[str, str]] = []
            if decision.short_of_capacity:
                by_id = {c.job_id: c for c in candidates}
                retire = warm_to_retire(
                    [by_id[j] for j in decision.short_of_capacity],
                    decision.usage,
                    limits.limits(),
                    [_hold(r) for r in left if r.state != "retiring"],
                )
                if retire:
                    session.execute(
                        update(WarmDriverRow)
                        .where(WarmDriverRow.id.in_(retire))
                        .values(state="retiring")
                        .execution_options(synchronize_session=False)
                    )
            else:
                started = self._top_up(
                    session, server_id, warm, sizes, left, decision.usage, limits, now
                )
        if claims:
            self._store.notify_change([c.job.id for c in claims], wake_scheduler=False)
        return AdmitResult(claims, started)

    def _still_full(self) -> bool:
        """True when the running-jobs limit was reached at the last step and still is, and no
        job arrived since: nothing to admit or explain, so no write transaction (submissions
        wake the scheduler every few milliseconds under load; they must not queue behind it)."""
        if not self._explained_up_to:
            return False
        with self._store.reading() as session:
            now = time.monotonic()
            if self._cap_read is None or now - self._cap_read[0] > 1.0:
                # Limits change rarely; another replica's change is seen within a second.
                self._cap_read = (now, self._limits(session).max_running_jobs)
            cap = self._cap_read[1]
            conn = session.connection()
            active = run(conn, _COUNT_ACTIVE).scalar()
            newest = run(conn, _NEWEST_JOB).scalar() or 0
        return cap is not None and int(active or 0) >= cap and newest <= self._explained_up_to

    def _explain_full(self, conn: Connection, cap: int) -> None:
        # Nothing can start: skip reading candidates; just explain the arrivals since the last
        # step (an id range, so a long queue is not rescanned every time).
        newest = run(conn, _NEWEST_JOB).scalar() or 0
        if newest > self._explained_up_to:
            conn.execute(
                _EXPLAIN_FULL,
                {
                    "b_from": self._explained_up_to,
                    "b_to": newest,
                    "b_reason": f"global running-jobs limit {cap} reached",
                },
            )
        self._explained_up_to = newest

    @staticmethod
    def _hand_to_warm(
        session: Session, candidates: list[Candidate], idle: list[WarmDriverRow], warm: WarmPlan
    ) -> tuple[list[Candidate], dict[int, str], dict[int, str]]:
        """Pair waiting jobs that a warm driver can run with this server's idle ones (in the
        order jobs would be admitted); a paired job's demand is credited with the driver's
        reservation. Returns the candidates, job id -> warm driver id, and job id -> why a
        job of a pooled cluster cannot run warm."""
        if not idle:
            return candidates, {}, {}
        wanted = [c.job_id for c in candidates if c.cluster in {r.cluster for r in idle}]
        specs = {
            job_id: JobSpec.from_stored(spec)
            for job_id, spec in session.execute(
                select(JobRow.id, JobRow.spec).where(JobRow.id.in_(wanted))
            )
        }
        free = list(idle)
        handed: dict[int, str] = {}
        notes: dict[int, str] = {}
        paired: list[Candidate] = []
        for candidate in sorted(candidates, key=lambda c: (-c.priority, c.job_id)):
            spec = specs.get(candidate.job_id)
            match = next((r for r in free if r.cluster == candidate.cluster), None)
            if spec is None or match is None:
                paired.append(candidate)
                continue
            reason = cold_reason(
                spec, warm.pools[candidate.cluster], warm.fixed_conf.get(candidate.cluster, {})
            )
            if reason is not None:
                notes[candidate.job_id] = reason
                paired.append(candidate)
                continue
            free.remove(match)
            handed[candidate.job_id] = match.id
            paired.append(replace(candidate, credit=_hold(match).held))
        return paired, handed, notes

    @staticmethod
    def _cold_notes(
        session: Session,
        admitted: list[Candidate],
        handed: Mapping[int, str],
        known: Mapping[int, str],
        pool_clusters: set[str],
        warm: WarmPlan,
    ) -> dict[int, str]:
        """Why admitted jobs of clusters with a warm pool start cold, for those
        `_hand_to_warm` did not already judge (their cluster had no idle driver here)."""
        unjudged = [
            c
            for c in admitted
            if c.cluster in pool_clusters and c.job_id not in handed and c.job_id not in known
        ]
        if not unjudged:
            return {}
        specs: dict[int, dict[str, Any]] = {
            job_id: spec
            for job_id, spec in session.execute(
                select(JobRow.id, JobRow.spec).where(JobRow.id.in_([c.job_id for c in unjudged]))
            )
        }
        notes: dict[int, str] = {}
        for candidate in unjudged:
            cluster = candidate.cluster
            spec = JobSpec.from_stored(specs[candidate.job_id])
            notes[candidate.job_id] = (
                cold_reason(spec, warm.pools[cluster], warm.fixed_conf.get(cluster, {}))
                or "no idle warm driver on the admitting server"
            )
        return notes

    @staticmethod
    def _shrink(server_id: str, sizes: Mapping[str, int], rows: list[WarmDriverRow]) -> None:
        """Retire this server's warm drivers beyond its pools' sizes (an admin made a pool
        smaller, or turned it off), newest first."""
        mine: dict[str, list[WarmDriverRow]] = {}
        for row in rows:
            if row.server_id == server_id and row.state != "retiring":
                mine.setdefault(row.cluster, []).append(row)
        extra = []
        for cluster, held in mine.items():
            held.sort(key=lambda r: r.created_at)
            extra += held[sizes.get(cluster, 0) :]
        for row in extra:
            row.state = "retiring"  # a loaded row: the session writes it at commit

    @staticmethod
    def _top_up(
        session: Session,
        server_id: str,
        warm: WarmPlan,
        sizes: Mapping[str, int],
        rows: list[WarmDriverRow],
        usage: Usage,
        limits: LimitsDoc,
        now: datetime,
    ) -> list[tuple[str, str]]:
        """Reserve new warm drivers for this server's pools while they fit under the limits.
        Returns (warm driver id, cluster) pairs to start."""
        started: list[tuple[str, str]] = []
        for cluster, pool in warm.pools.items():
            have = sum(
                1
                for r in rows
                if r.server_id == server_id and r.cluster == cluster and r.state != "retiring"
            )
            demand = warm_demand(pool)
            for _ in range(sizes.get(cluster, 0) - have):
                if not room_for(usage, limits.limits(), cluster, demand):
                    break
                warm_id = f"warm-{secrets.token_hex(6)}"
                session.add(
                    WarmDriverRow(
                        id=warm_id,
                        server_id=server_id,
                        cluster=cluster,
                        memory_mb=demand.memory_mb,
                        cores=demand.cores,
                        state="starting",
                        created_at=now,
                    )
                )
                usage = Usage(
                    usage.total + demand,
                    {
                        **usage.by_cluster,
                        cluster: usage.by_cluster.get(cluster, Resources()) + demand,
                    },
                    usage.by_queue,
                )
                started.append((warm_id, cluster))
        return started

    def _candidates(
        self,
        conn: Connection,
        names: Sequence[str],
        clusters: Sequence[str],
        now: datetime,
        per_queue: int,
    ) -> list[tuple[Candidate, str | None]]:
        """The first `per_queue` waiting jobs of every queue, with their current wait reason.
        (Jobs can only be submitted to configured queues, so `names` covers them all; each
        lookup is a walk of the (queue, state, priority, id) index.)"""
        key = (tuple(clusters), per_queue)
        statement = self._candidate_statements.get(key)
        if statement is None:
            statement = self._candidate_statements[key] = (
                select(
                    JOBS.c.id,
                    JOBS.c.cluster,
                    JOBS.c.priority,
                    JOBS.c.demand_memory_mb,
                    JOBS.c.demand_cores,
                    JOBS.c.wait_reason,
                )
                .where(
                    JOBS.c.state == JobState.QUEUED.value,
                    JOBS.c.cluster.in_(list(clusters)),
                    or_(JOBS.c.not_before.is_(None), JOBS.c.not_before <= bindparam("b_now")),
                    JOBS.c.queue == bindparam("b_queue"),
                )
                .order_by(JOBS.c.priority.desc(), JOBS.c.id)
                .limit(per_queue)
            )
        found: list[tuple[Candidate, str | None]] = []
        for name in names:
            rows = run(conn, statement, {"b_now": now, "b_queue": name})
            found += [
                (Candidate(job_id, name, cluster, priority, Resources(1, memory, cores)), reason)
                for job_id, cluster, priority, memory, cores, reason in rows
            ]
        return found

    @staticmethod
    def _record_reasons(
        conn: Connection, decision: Decision, previous: dict[int, str | None]
    ) -> None:
        # Only what changed is written (a full queue must not rewrite every job each step), in
        # one executemany.
        changed = [
            {"b_job_id": job_id, "b_reason": reason}
            for job_id, reason in decision.waiting.items()
            if previous.get(job_id) != reason
        ]
        if changed:
            run(conn, _SET_WAIT_REASON, changed)
