"""Warm-pool planning for one admit step: pure functions over plain records, no I/O.

The admit step (`chidori.store.admit_step`) reads a snapshot (waiting jobs, what is reserved,
the warm drivers and the pools' sizes), asks `chidori.domain.admission.admit` which jobs start,
and asks this module what the warm pools do around that:
- `hand_to_warm`: which waiting jobs go to which of this server's idle warm drivers (a handed
  job's demand is credited with the driver's reservation);
- `cold_notes`: why admitted jobs of a pooled cluster start cold;
- `warm_changes`: which warm drivers to retire (beyond their pool's size, or standing in a
  waiting job's way) and which to reserve anew (pools below size, while they fit the limits).
The step then applies the plan in the same transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum

from chidori.domain.admission import (
    Candidate,
    Decision,
    Limits,
    Resources,
    Usage,
    WarmHold,
    room_for,
    warm_to_retire,
)
from chidori.domain.spec import JobSpec
from chidori.domain.warm import WarmPoolConfig, cold_reason, warm_demand

NO_IDLE_DRIVER = "no idle warm driver on the admitting server"


class WarmState(StrEnum):
    """A warm driver's reservation: reserved and its process starting, ready for a job, or
    being stopped (its reservation still counts until its process is gone)."""

    STARTING = "starting"
    IDLE = "idle"
    RETIRING = "retiring"


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
    state: WarmState
    held: Resources
    pid: int | None
    created_at: datetime

    @property
    def hold(self) -> WarmHold:
        return WarmHold(self.id, self.cluster, self.held)


@dataclass(frozen=True)
class Handover:
    """`hand_to_warm`'s answer: the candidates (handed ones credited), job id -> warm driver
    id, and job id -> why a job of a cluster with an idle driver cannot run warm."""

    candidates: list[Candidate]
    handed: dict[int, str] = field(default_factory=dict)
    notes: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class WarmChanges:
    retire: list[str]  # warm driver ids
    reserve: list[tuple[str, Resources]]  # (cluster, what the new driver holds), in order


def hand_to_warm(
    candidates: Sequence[Candidate],
    specs: Mapping[int, JobSpec],
    idle: Sequence[WarmDriver],
    plan: WarmPlan,
) -> Handover:
    """Pair waiting jobs that a warm driver can run with this server's `idle` ones, in the
    order jobs would be admitted (priority, then age). `specs` holds the candidates' specs
    (at least those of clusters with an idle driver)."""
    if not idle:
        return Handover(list(candidates))
    free = list(idle)
    handed: dict[int, str] = {}
    notes: dict[int, str] = {}
    paired: list[Candidate] = []
    for candidate in sorted(candidates, key=lambda c: (-c.priority, c.job_id)):
        spec = specs.get(candidate.job_id)
        match = next((d for d in free if d.cluster == candidate.cluster), None)
        if spec is None or match is None:
            paired.append(candidate)
            continue
        cluster = candidate.cluster
        reason = cold_reason(spec, plan.pools[cluster], plan.fixed_conf.get(cluster, {}))
        if reason is not None:
            notes[candidate.job_id] = reason
            paired.append(candidate)
            continue
        free.remove(match)
        handed[candidate.job_id] = match.id
        paired.append(replace(candidate, credit=match.held))
    return Handover(paired, handed, notes)


def cold_notes(
    admitted: Iterable[Candidate],
    specs: Mapping[int, JobSpec],
    handover: Handover,
    pool_clusters: set[str],
    plan: WarmPlan,
) -> dict[int, str]:
    """Why admitted jobs of clusters with a warm pool start cold, for those `hand_to_warm`
    did not already judge (their cluster had no idle driver here)."""
    notes: dict[int, str] = {}
    for candidate in admitted:
        job_id, cluster = candidate.job_id, candidate.cluster
        if cluster not in pool_clusters or job_id in handover.handed or job_id in handover.notes:
            continue
        notes[job_id] = (
            cold_reason(specs[job_id], plan.pools[cluster], plan.fixed_conf.get(cluster, {}))
            or NO_IDLE_DRIVER
        )
    return notes


def beyond_size(
    server_id: str, sizes: Mapping[str, int], drivers: Iterable[WarmDriver]
) -> list[str]:
    """This server's warm drivers beyond their pools' sizes (an admin made a pool smaller,
    or turned it off), newest first to go."""
    mine: dict[str, list[WarmDriver]] = {}
    for driver in drivers:
        if driver.server_id == server_id and driver.state is not WarmState.RETIRING:
            mine.setdefault(driver.cluster, []).append(driver)
    extra: list[str] = []
    for cluster, held in mine.items():
        held.sort(key=lambda d: d.created_at)
        extra += [d.id for d in held[sizes.get(cluster, 0) :]]
    return extra


def warm_changes(
    server_id: str,
    plan: WarmPlan,
    sizes: Mapping[str, int],
    left: Sequence[WarmDriver],
    waiting_for_room: Sequence[Candidate],
    decision: Decision,
    limits: Limits,
) -> WarmChanges:
    """After the admitted jobs took their warm drivers (`left` are the others): retire this
    server's drivers beyond their pool's size; then, if jobs wait for capacity
    (`waiting_for_room`, in admission order), retire warm drivers (anyone's) that stand in
    their way, else reserve new drivers for this server's pools while they fit."""
    shrunk = beyond_size(server_id, sizes, left)
    active = [d for d in left if d.state is not WarmState.RETIRING and d.id not in shrunk]
    if waiting_for_room:
        in_way = warm_to_retire(waiting_for_room, decision.usage, limits, [d.hold for d in active])
        return WarmChanges(shrunk + in_way, [])
    usage = decision.usage
    reserve: list[tuple[str, Resources]] = []
    for cluster, pool in plan.pools.items():
        have = sum(1 for d in active if d.server_id == server_id and d.cluster == cluster)
        demand = warm_demand(pool)
        for _ in range(sizes.get(cluster, 0) - have):
            if not room_for(usage, limits, cluster, demand):
                break
            reserve.append((cluster, demand))
            usage = Usage(
                usage.total + demand,
                {**usage.by_cluster, cluster: usage.by_cluster.get(cluster, Resources()) + demand},
                usage.by_queue,
            )
    return WarmChanges(shrunk, reserve)
