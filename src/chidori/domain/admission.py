"""Admission: which waiting jobs may start now. A pure function, no I/O.

A job's demand is its whole gang: the driver plus every executor it asks for; it is admitted
only if all of it fits under the global limits, its cluster's limits and its queue's quota, or
it waits (no partial start). Queues are served by rank (queue priority), then by weighted fair
share (fewest running jobs per unit of weight first); within a queue by job priority, then
first in, first out. A job that does not fit does not block smaller ones behind it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from chidori.domain.nodes import ExecutorGang, NodeView, place
from chidori.domain.units import format_memory


@dataclass(frozen=True)
class Resources:
    jobs: int = 0
    memory_mb: int = 0
    cores: int = 0

    def __add__(self, other: Resources) -> Resources:
        return Resources(
            self.jobs + other.jobs, self.memory_mb + other.memory_mb, self.cores + other.cores
        )

    def __sub__(self, other: Resources) -> Resources:
        return Resources(
            self.jobs - other.jobs, self.memory_mb - other.memory_mb, self.cores - other.cores
        )


@dataclass(frozen=True)
class Limit:
    """Caps on what may be reserved at once; None = no cap."""

    max_running_jobs: int | None = None
    max_memory_mb: int | None = None
    max_cores: int | None = None

    def refusal(self, reserved: Resources, demand: Resources, scope: str) -> str | None:
        """Why `demand` does not fit on top of `reserved`, or None if it fits."""
        if (
            self.max_running_jobs is not None
            and reserved.jobs + demand.jobs > self.max_running_jobs
        ):
            # No live count in the text: waiting jobs keep their reason while others come
            # and go, so it need not be rewritten for each of them at every step.
            return f"{scope} running-jobs limit {self.max_running_jobs} reached"
        if (
            self.max_memory_mb is not None
            and reserved.memory_mb + demand.memory_mb > self.max_memory_mb
        ):
            free = max(0, self.max_memory_mb - reserved.memory_mb)
            return (
                f"{scope} memory limit {format_memory(self.max_memory_mb)}: needs "
                f"{format_memory(demand.memory_mb)}, {format_memory(free) if free else '0'} free"
            )
        if self.max_cores is not None and reserved.cores + demand.cores > self.max_cores:
            free = max(0, self.max_cores - reserved.cores)
            return f"{scope} cores limit {self.max_cores}: needs {demand.cores}, {free} free"
        return None

    def too_small_for(self, demand: Resources, scope: str) -> str | None:
        """Why `demand` could never fit, even with nothing else running. The running-jobs cap
        is left out: 0 pauses admission, it does not make a job impossible."""
        return Limit(None, self.max_memory_mb, self.max_cores).refusal(Resources(), demand, scope)


@dataclass(frozen=True)
class QueueConfig:
    name: str
    priority: int = 0
    weight: float = 1.0
    quota: Limit = field(default_factory=Limit)


@dataclass(frozen=True)
class Limits:
    total: Limit = field(default_factory=Limit)
    clusters: Mapping[str, Limit] = field(default_factory=dict)


@dataclass(frozen=True)
class Candidate:
    job_id: int
    queue: str
    cluster: str
    priority: int
    demand: Resources
    # What admitting this job releases at once: the reservation of the idle warm driver it
    # would be handed to. It counts against the global and cluster limits, not the queue's.
    credit: Resources = field(default_factory=Resources)
    # On a cluster whose nodes admission sees (Kubernetes): the executors that must fit on them.
    gang: ExecutorGang | None = None


@dataclass(frozen=True)
class WarmHold:
    """A warm driver's reservation (warm drivers belong to a cluster, not to a queue)."""

    id: str
    cluster: str
    held: Resources


@dataclass(frozen=True)
class Usage:
    """What admitted and running jobs hold now."""

    total: Resources = field(default_factory=Resources)
    by_cluster: Mapping[str, Resources] = field(default_factory=dict)
    by_queue: Mapping[str, Resources] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    admitted: list[int]
    waiting: dict[int, str]
    # Waiting jobs refused by a global or cluster limit (not by their queue's quota): the
    # ones that retiring warm drivers could make room for.
    short_of_capacity: list[int] = field(default_factory=list, compare=False)
    usage: Usage = field(default_factory=Usage, compare=False)  # after the admitted ones


def job_demand(
    driver_memory_mb: int,
    driver_cores: int,
    executor_instances: int,
    executor_memory_mb: int,
    executor_cores: int,
) -> Resources:
    return Resources(
        jobs=1,
        memory_mb=driver_memory_mb + executor_instances * executor_memory_mb,
        cores=driver_cores + executor_instances * executor_cores,
    )


def never_fits(demand: Resources, cluster: str, queue: QueueConfig, limits: Limits) -> str | None:
    """Why a job could never be admitted (its demand exceeds a whole limit), or None."""
    cluster_limit = limits.clusters.get(cluster, Limit())
    return (
        limits.total.too_small_for(demand, "global")
        or cluster_limit.too_small_for(demand, f"cluster {cluster!r}")
        or queue.quota.too_small_for(demand, f"queue {queue.name!r}")
    )


def admit(
    candidates: Iterable[Candidate],
    usage: Usage,
    limits: Limits,
    queues: Mapping[str, QueueConfig],
    nodes: Mapping[str, Sequence[NodeView]] | None = None,
) -> Decision:
    """Choose which candidates start now; give every other one the reason it waits.
    `nodes`: for clusters whose nodes are seen, a candidate's executor gang must also fit on
    them (what earlier candidates of this step take is taken out)."""
    free_nodes = dict(nodes or {})
    per_queue: dict[str, list[Candidate]] = {}
    for candidate in candidates:
        per_queue.setdefault(candidate.queue, []).append(candidate)
    for queued in per_queue.values():
        queued.sort(key=lambda c: (-c.priority, c.job_id))
    total = usage.total
    by_cluster = dict(usage.by_cluster)
    by_queue = dict(usage.by_queue)
    admitted: list[int] = []
    reasons: dict[int, str] = {}
    short: list[int] = []
    positions = dict.fromkeys(per_queue, 0)

    def config(name: str) -> QueueConfig:
        return queues.get(name) or QueueConfig(name)

    def rank(name: str) -> tuple[int, float, str]:
        queue = config(name)
        running = by_queue.get(name, Resources()).jobs
        return (-queue.priority, running / queue.weight if queue.weight > 0 else float("inf"), name)

    while positions:
        name = min(positions, key=rank)
        waiting: Sequence[Candidate] = per_queue[name]
        candidate = waiting[positions[name]]
        positions[name] += 1
        if positions[name] >= len(waiting):
            del positions[name]
        queue = config(name)
        cluster_usage = by_cluster.get(candidate.cluster, Resources())
        queue_usage = by_queue.get(name, Resources())
        net = candidate.demand - candidate.credit
        capacity = limits.total.refusal(total, net, "global") or limits.clusters.get(
            candidate.cluster, Limit()
        ).refusal(cluster_usage, net, f"cluster {candidate.cluster!r}")
        refusal = queue.quota.refusal(queue_usage, candidate.demand, f"queue {name!r}")
        if capacity is not None or refusal is not None:
            reasons[candidate.job_id] = capacity or refusal or ""
            if capacity is not None and refusal is None:
                short.append(candidate.job_id)
            continue
        if candidate.gang is not None and candidate.cluster in free_nodes:
            placement = place(candidate.gang, free_nodes[candidate.cluster])
            if placement.reason is not None:
                reasons[candidate.job_id] = placement.reason
                continue
            free_nodes[candidate.cluster] = placement.nodes
        admitted.append(candidate.job_id)
        total = total + net
        by_cluster[candidate.cluster] = cluster_usage + net
        by_queue[name] = queue_usage + candidate.demand
    return Decision(admitted, reasons, short, Usage(total, by_cluster, by_queue))


def warm_to_retire(
    waiting: Sequence[Candidate], usage: Usage, limits: Limits, warm: Sequence[WarmHold]
) -> list[str]:
    """Which warm drivers to stop so that waiting jobs fit: the pool shrinks before a real job
    waits for the memory, cores or slots it holds. `waiting` are jobs short of global or
    cluster capacity, in the order they would be admitted; `usage` counts the warm drivers.
    A job that would not fit even with every warm driver gone retires none."""
    total = usage.total
    by_cluster = dict(usage.by_cluster)
    left = list(warm)
    chosen: list[str] = []

    def refusal(candidate: Candidate, total: Resources, cluster: Resources) -> str | None:
        return limits.total.refusal(total, candidate.demand, "global") or limits.clusters.get(
            candidate.cluster, Limit()
        ).refusal(cluster, candidate.demand, "cluster")

    for candidate in waiting:
        # Same cluster first: those free room under both the cluster's limit and the global one.
        order = sorted(left, key=lambda hold: hold.cluster != candidate.cluster)
        trial_total, trial_cluster = total, by_cluster.get(candidate.cluster, Resources())
        picked: list[WarmHold] = []
        for hold in order:
            if refusal(candidate, trial_total, trial_cluster) is None:
                break
            picked.append(hold)
            trial_total = trial_total - hold.held
            if hold.cluster == candidate.cluster:
                trial_cluster = trial_cluster - hold.held
        if not picked or refusal(candidate, trial_total, trial_cluster) is not None:
            continue
        for hold in picked:
            left.remove(hold)
            chosen.append(hold.id)
            by_cluster[hold.cluster] = by_cluster.get(hold.cluster, Resources()) - hold.held
        # Room made for this job is its own: later jobs are judged after it starts.
        total = trial_total + candidate.demand
        by_cluster[candidate.cluster] = trial_cluster + candidate.demand
    return chosen


def room_for(usage: Usage, limits: Limits, cluster: str, demand: Resources) -> bool:
    """Whether `demand` fits under the global and the cluster's limits on top of `usage`."""
    return (
        limits.total.refusal(usage.total, demand, "global") is None
        and limits.clusters.get(cluster, Limit()).refusal(
            usage.by_cluster.get(cluster, Resources()), demand, "cluster"
        )
        is None
    )
