"""The admit step: read a snapshot, plan in pure code, apply the plan, in one transaction.

The transaction is serialised across every replica sharing the database (a PostgreSQL advisory
lock; SQLite's BEGIN IMMEDIATE), and what is reserved is read from the jobs table itself in
it, so limits hold across replicas at every moment. The step:
1. records the attempt end that freed the capacity, if any (one transaction per driver exit);
2. reads the snapshot: limits, queues, usage, warm drivers and pool sizes, the heads of the
   queues (`_read`);
3. plans: which jobs start (`chidori.domain.admission.admit`), which go to an idle warm
   driver, why the others wait or start cold, which warm drivers to retire or reserve
   (`chidori.domain.warm_planning`);
4. applies it: claims (each a compare-and-set), wait reasons, warm driver rows (`_apply`).
"""

from __future__ import annotations

import secrets
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Select, Table, bindparam, delete, insert, or_, select, update

from chidori.domain.admission import Candidate, Decision, Limits, Resources, Usage, admit
from chidori.domain.limits import LimitsDoc, QueueDoc
from chidori.domain.nodes import NodeSource
from chidori.domain.records import Claim, Ending
from chidori.domain.spec import JobSpec
from chidori.domain.states import JobState
from chidori.domain.warm_planning import (
    Handover,
    WarmChanges,
    WarmDriver,
    WarmPlan,
    WarmState,
    cold_notes,
    hand_to_warm,
    warm_changes,
)
from chidori.store.admission_reads import (
    ADMISSION_LOCK,
    ADMISSION_SETTINGS,
    COUNT_ACTIVE,
    EXPLAIN_FULL,
    LIMITS_KEY,
    LOCK_ADMISSION,
    NEWEST_JOB,
    SET_WAIT_REASON,
    WARM_POOL_KEY,
    ParsedSettings,
    pool_sizes,
    usage_of,
    warm_record,
)
from chidori.store.attempts import AttemptRepository, claim_in
from chidori.store.database import Database, LeanConnection
from chidori.store.models import WarmDriverRow
from chidori.store.statements import JOBS, run

Lean = Connection | LeanConnection
_WARM = cast(Table, WarmDriverRow.__table__)
WARM_DRIVERS = select(*_WARM.c)
DROP_WARM_DRIVER = delete(_WARM).where(_WARM.c.id == bindparam("b_id"))
RETIRE_WARM_DRIVER = (
    update(_WARM).where(_WARM.c.id == bindparam("b_id")).values(state=WarmState.RETIRING.value)
)
INSERT_WARM_DRIVER = insert(_WARM)
JOB_SPEC = select(JOBS.c.spec).where(JOBS.c.id == bindparam("b_id"))


@dataclass(frozen=True)
class AdmitResult:
    claims: list[Claim]
    warm_to_start: list[tuple[str, str]]  # (warm driver id, cluster) reserved on this server
    full: bool = False  # the running-jobs limit is reached: nothing can start until one ends
    # The wait reasons this step newly gave jobs (for the metrics: each change counted once).
    new_reasons: list[str] = field(default_factory=list)


@dataclass
class _Snapshot:
    """What the step plans from, read inside its transaction."""

    limits: LimitsDoc
    usage: Usage
    warm: list[WarmDriver]
    queues: dict[str, QueueDoc]
    sizes: dict[str, int]  # warm pool sizes: the config's, overridden by an admin's


@dataclass
class _Plan:
    decision: Decision
    candidates: list[Candidate]
    previous_reasons: dict[int, str | None]
    handover: Handover
    notes: dict[int, str]  # why each admitted job starts as it does (cold ones)


class AdmitStep:
    def __init__(self, db: Database, settings: ParsedSettings) -> None:
        self._db = db
        self._settings = settings
        self._attempts = AttemptRepository(db)  # a stateless view: ends share the transaction
        self._explained_up_to = 0
        self._cap_read: tuple[float, int | None] | None = None
        self._candidate_statements: dict[tuple[tuple[str, ...], int], Select[Any]] = {}
        # Specs of the jobs still waiting at the last step (a spec never changes once stored):
        # warm-pool and node-aware decisions read them for every waiting job at every step.
        self._waiting_specs: dict[int, JobSpec] = {}

    def forget_cap(self) -> None:
        """The limits changed on this replica: read them again at the next step."""
        self._cap_read = None

    def __call__(
        self,
        server_id: str,
        host: str,
        clusters: Sequence[str],
        lease_seconds: float,
        per_queue: int = 64,
        warm: WarmPlan | None = None,
        ending: Ending | None = None,
        nodes: NodeSource | None = None,
    ) -> AdmitResult:
        try:
            return self._step(
                server_id, host, clusters, lease_seconds, per_queue, warm, ending, nodes
            )
        finally:
            if ending is not None:
                # Told even when the admit step failed after the end committed; harmless if
                # it did not (listeners re-read the store).
                self._db.notify_change([ending.job_id], wake_scheduler=False)

    def _step(
        self,
        server_id: str,
        host: str,
        clusters: Sequence[str],
        lease_seconds: float,
        per_queue: int,
        warm: WarmPlan | None,
        ending: Ending | None,
        nodes: NodeSource | None,
    ) -> AdmitResult:
        if ending is None and self._still_full():
            return AdmitResult([], [], full=True)
        now = self._db.now()
        warm = warm or WarmPlan({}, {})
        with self._db.lean() as conn:
            if self._db.dialect == "postgresql":
                run(conn, LOCK_ADMISSION, {"key": ADMISSION_LOCK})
            if ending is not None:
                self._attempts.finish_in(conn, ending)
            snapshot = self._read(conn, warm)
            cap = snapshot.limits.max_running_jobs
            if cap is not None and snapshot.usage.total.jobs - len(snapshot.warm) >= cap:
                explained = self._explain_full(conn, cap)
                return AdmitResult([], [], full=True, new_reasons=explained)
            self._explained_up_to = 0  # reasons are per job again below; start over next time
            plan = self._plan(conn, snapshot, server_id, clusters, now, per_queue, warm, nodes)
            claims, taken = self._claim(conn, plan, server_id, host, lease_seconds, now)
            new_reasons = _record_reasons(conn, plan.decision, plan.previous_reasons)
            limits = snapshot.limits.limits()
            by_id = {c.job_id: c for c in plan.candidates}
            changes = warm_changes(
                server_id,
                warm,
                snapshot.sizes,
                [d for d in snapshot.warm if d.id not in taken],
                [by_id[j] for j in plan.decision.short_of_capacity],
                plan.decision,
                limits,
            )
            started = _apply_warm(conn, server_id, changes, now)
        if claims:
            self._db.notify_change([c.job.id for c in claims], wake_scheduler=False)
        return AdmitResult(claims, started, new_reasons=new_reasons)

    # ---- read -----------------------------------------------------------------------------

    def _read(self, conn: Lean, warm: WarmPlan) -> _Snapshot:
        settings = {key: value for key, value in run(conn, ADMISSION_SETTINGS)}
        usage, warm_count = usage_of(conn)
        drivers = [warm_record(row) for row in run(conn, WARM_DRIVERS)] if warm_count else []
        sizes = {
            **{c: p.size for c, p in warm.pools.items()},
            **pool_sizes(settings.get(WARM_POOL_KEY)),
        }
        return _Snapshot(
            self._settings.limits(settings.get(LIMITS_KEY)),
            usage,
            drivers,
            self._settings.read_queues(conn),
            sizes,
        )

    def _candidates(
        self,
        conn: Lean,
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
    def _specs(
        conn: Lean, job_ids: Sequence[int], known: Mapping[int, JobSpec]
    ) -> dict[int, JobSpec]:
        """The specs of `job_ids` (only warm-pool decisions need them), added to `known`."""
        found = dict(known)
        for job_id in job_ids:
            if job_id not in found:
                row = run(conn, JOB_SPEC, {"b_id": job_id}).one_or_none()
                if row is not None:
                    found[job_id] = JobSpec.from_stored(row.spec)
        return found

    # ---- plan -----------------------------------------------------------------------------

    def _plan(
        self,
        conn: Lean,
        snapshot: _Snapshot,
        server_id: str,
        clusters: Sequence[str],
        now: datetime,
        per_queue: int,
        warm: WarmPlan,
        nodes: NodeSource | None = None,
    ) -> _Plan:
        """Which jobs start and how. With only a few slots free, only a few jobs can start:
        the head of each queue is read first, and the whole window only if the head admits
        fewer jobs than there are free slots."""
        cap = snapshot.limits.max_running_jobs
        limits: Limits = snapshot.limits.limits()
        configs = {name: doc.config(name) for name, doc in snapshot.queues.items()}
        pool_clusters = {c for c in warm.pools if snapshot.sizes.get(c, 0) > 0}
        idle = [
            d
            for d in snapshot.warm
            if d.server_id == server_id and d.state is WarmState.IDLE and d.cluster in warm.pools
        ]
        idle_clusters = {d.cluster for d in idle}
        free = None if cap is None or snapshot.warm else cap - snapshot.usage.total.jobs
        windows = [per_queue]
        if free is not None and 4 * free < per_queue:
            windows.insert(0, max(8, 4 * free))
        specs: dict[int, JobSpec] = dict(self._waiting_specs)
        views = nodes.node_views() if nodes is not None else {}
        for window in windows:
            queued = self._candidates(conn, list(snapshot.queues), clusters, now, window)
            waiting = [c for c, _ in queued]
            specs = self._specs(
                conn,
                [c.job_id for c in waiting if c.cluster in idle_clusters or c.cluster in views],
                specs,
            )
            if nodes is not None and views:
                waiting = [
                    replace(c, gang=nodes.gang_of(c.cluster, specs[c.job_id]))
                    if c.cluster in views and c.job_id in specs
                    else c
                    for c in waiting
                ]
            handover = hand_to_warm(waiting, specs, idle, warm)
            decision = admit(handover.candidates, snapshot.usage, limits, configs, views)
            heads = Counter(c.queue for c in handover.candidates)
            if len(decision.admitted) >= (free or 0) or max(heads.values(), default=0) < window:
                break
        admitted = set(decision.admitted)
        self._waiting_specs = {
            c.job_id: specs[c.job_id]
            for c in waiting
            if c.job_id in specs and c.job_id not in admitted
        }
        started = [c for c in handover.candidates if c.job_id in admitted]
        unjudged = [
            c.job_id
            for c in started
            if c.cluster in pool_clusters
            and c.job_id not in handover.handed
            and c.job_id not in handover.notes
        ]
        specs = self._specs(conn, unjudged, specs)
        notes = {**handover.notes, **cold_notes(started, specs, handover, pool_clusters, warm)}
        return _Plan(
            decision, handover.candidates, dict((c.job_id, r) for c, r in queued), handover, notes
        )

    # ---- apply ----------------------------------------------------------------------------

    @staticmethod
    def _claim(
        conn: Lean,
        plan: _Plan,
        server_id: str,
        host: str,
        lease_seconds: float,
        now: datetime,
    ) -> tuple[list[Claim], set[str]]:
        claims: list[Claim] = []
        taken: set[str] = set()
        for job_id in plan.decision.admitted:
            warm_id = plan.handover.handed.get(job_id)
            claim = claim_in(
                conn, job_id, server_id, host, lease_seconds, now,
                "warm" if warm_id else "cold", None if warm_id else plan.notes.get(job_id),
                warm_id,
            )  # fmt: skip
            if claim is None:
                continue  # another replica took it
            claims.append(claim)
            if warm_id is not None:
                # The job holds what the warm driver held: one reservation, handed over.
                run(conn, DROP_WARM_DRIVER, {"b_id": warm_id})
                taken.add(warm_id)
        return claims, taken

    def _still_full(self) -> bool:
        """True when the running-jobs limit was reached at the last step and still is, and no
        job arrived since: nothing to admit or explain, so no write transaction (submissions
        wake the scheduler every few milliseconds under load; they must not queue behind it)."""
        if not self._explained_up_to:
            return False
        with self._db.reading() as session:
            conn = session.connection()
            now = time.monotonic()
            if self._cap_read is None or now - self._cap_read[0] > 1.0:
                # Limits change rarely; another replica's change is seen within a second.
                self._cap_read = (now, self._settings.read_limits(conn).max_running_jobs)
            cap = self._cap_read[1]
            active = run(conn, COUNT_ACTIVE).scalar()
            newest = run(conn, NEWEST_JOB).scalar() or 0
        return cap is not None and int(active or 0) >= cap and newest <= self._explained_up_to

    def _explain_full(self, conn: Lean, cap: int) -> list[str]:
        # Nothing can start: skip reading candidates; just explain the arrivals since the last
        # step (an id range, so a long queue is not rescanned every time).
        newest = run(conn, NEWEST_JOB).scalar() or 0
        explained: list[str] = []
        if newest > self._explained_up_to:
            reason = f"global running-jobs limit {cap} reached"
            written = run(
                conn,
                EXPLAIN_FULL,
                {
                    "b_from": self._explained_up_to,
                    "b_to": newest,
                    "b_reason": reason,
                },
            )
            explained = [reason] * max(0, written.rowcount)
        self._explained_up_to = newest
        return explained


def _record_reasons(conn: Lean, decision: Decision, previous: dict[int, str | None]) -> list[str]:
    # Only what changed is written (a full queue must not rewrite every job each step), in
    # one executemany.
    changed = [
        {"b_job_id": job_id, "b_reason": reason}
        for job_id, reason in decision.waiting.items()
        if previous.get(job_id) != reason
    ]
    if changed:
        run(conn, SET_WAIT_REASON, changed)
    return [reason for job_id, reason in decision.waiting.items() if previous.get(job_id) != reason]


def _apply_warm(
    conn: Lean, server_id: str, changes: WarmChanges, now: datetime
) -> list[tuple[str, str]]:
    """Mark retired warm drivers and reserve new ones; returns the (id, cluster) to start."""
    if changes.retire:
        run(conn, RETIRE_WARM_DRIVER, [{"b_id": warm_id} for warm_id in changes.retire])
    started: list[tuple[str, str]] = []
    rows = []
    for cluster, demand in changes.reserve:
        warm_id = f"warm-{secrets.token_hex(6)}"
        rows.append(
            {
                "id": warm_id,
                "server_id": server_id,
                "cluster": cluster,
                "memory_mb": demand.memory_mb,
                "cores": demand.cores,
                "state": WarmState.STARTING.value,
                "created_at": now,
                "pid": None,
            }
        )
        started.append((warm_id, cluster))
    if rows:
        run(conn, INSERT_WARM_DRIVER, rows)
    return started
