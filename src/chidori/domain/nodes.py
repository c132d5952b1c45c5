"""Node-aware admission for Kubernetes clusters: does a job's executor gang fit on the nodes?

Pure code over a snapshot (`NodeView`s, read from the API server by the host). A node can
take executors when it is Ready, not cordoned, under no Memory/Disk/PID pressure, carries no
NoSchedule/NoExecute taint the executors do not tolerate, and matches their node selector;
then as many executors as its free allocatable (minus what bound pods request) holds. The
gang is the job's minimum executors (dynamic allocation's minimum): all of them are placed,
or the job waits with a reason that says which nodes were left out and why.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from chidori.domain.spec import JobSpec
from chidori.domain.units import format_memory

PRESSURES = ("MemoryPressure", "DiskPressure", "PIDPressure")
# The taints Kubernetes' node lifecycle controller adds for those conditions (and NotReady).
CONDITION_TAINTS = {
    "node.kubernetes.io/memory-pressure": "MemoryPressure",
    "node.kubernetes.io/disk-pressure": "DiskPressure",
    "node.kubernetes.io/pid-pressure": "PIDPressure",
    "node.kubernetes.io/not-ready": "NotReady",
    "node.kubernetes.io/unreachable": "NotReady",
    "node.kubernetes.io/unschedulable": "cordoned",
}
_BLOCKING_EFFECTS = ("NoSchedule", "NoExecute")


@dataclass(frozen=True)
class Taint:
    key: str
    value: str = ""
    effect: str = "NoSchedule"


@dataclass(frozen=True)
class Toleration:
    key: str = ""  # empty with operator Exists: tolerates everything
    operator: str = "Equal"
    value: str = ""
    effect: str = ""  # empty: every effect

    def tolerates(self, taint: Taint) -> bool:
        if self.effect and self.effect != taint.effect:
            return False
        if not self.key:
            return self.operator == "Exists"
        if self.key != taint.key:
            return False
        return self.operator == "Exists" or self.value == taint.value


@dataclass(frozen=True)
class NodeView:
    """One node as admission sees it: health, placement rules and free capacity."""

    name: str
    ready: bool = True
    unschedulable: bool = False
    pressures: tuple[str, ...] = ()  # those of PRESSURES whose condition is True
    taints: tuple[Taint, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    free_millicores: int = 0  # allocatable minus what bound, unfinished pods request
    free_memory_bytes: int = 0


@dataclass(frozen=True)
class ExecutorGang:
    """What must fit before a job starts: `count` executors of this size and placement."""

    count: int
    millicores: int
    memory_bytes: int
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Toleration, ...] = ()


def _exclusion(node: NodeView, gang: ExecutorGang) -> str | None:
    """Why no executor of `gang` may go to `node` at all, or None. The words are those the
    wait reason counts ("2 nodes under DiskPressure")."""
    if not node.ready:
        return "not Ready"
    if node.unschedulable:
        return "cordoned"
    if node.pressures:
        return f"under {node.pressures[0]}"
    for taint in node.taints:
        if taint.effect not in _BLOCKING_EFFECTS:
            continue
        if any(t.tolerates(taint) for t in gang.tolerations):
            continue
        condition = CONDITION_TAINTS.get(taint.key)
        if condition == "cordoned":
            return "cordoned"
        if condition == "NotReady":
            return "not Ready"
        if condition is not None:
            return f"under {condition}"
        return f"tainted {taint.key}" + (f"={taint.value}" if taint.value else "")
    for key, value in gang.node_selector.items():
        if node.labels.get(key) != value:
            return "not matching the node selector"
    return None


def _capacity(node: NodeView, gang: ExecutorGang) -> int:
    """How many of the gang's executors fit in `node`'s free capacity."""
    by_cpu = node.free_millicores // gang.millicores if gang.millicores > 0 else gang.count
    by_memory = node.free_memory_bytes // gang.memory_bytes if gang.memory_bytes > 0 else gang.count
    return max(0, min(by_cpu, by_memory))


@dataclass(frozen=True)
class Placement:
    """The outcome: `reason` is None when the whole gang fits; `nodes` is the snapshot with
    the gang's executors taken out (what the next job of the same step sees)."""

    reason: str | None
    nodes: tuple[NodeView, ...]


def place(gang: ExecutorGang, nodes: Sequence[NodeView]) -> Placement:
    """Place the whole gang (most free node first, so executors spread less) or none of it."""
    if gang.count <= 0:
        return Placement(None, tuple(nodes))
    excluded: Counter[str] = Counter()
    usable: list[tuple[int, NodeView]] = []
    for index, node in enumerate(nodes):
        why = _exclusion(node, gang)
        if why is not None:
            excluded[why] += 1
        else:
            usable.append((index, node))
    left = gang.count
    taken: dict[int, int] = {}
    for index, node in sorted(usable, key=lambda pair: -_capacity(pair[1], gang)):
        if left <= 0:
            break
        fits = min(left, _capacity(node, gang))
        if fits > 0:
            taken[index] = fits
            left -= fits
    if left > 0:
        return Placement(_refusal(gang, usable, excluded), tuple(nodes))
    after = list(nodes)
    for index, count in taken.items():
        node = after[index]
        after[index] = replace(
            node,
            free_millicores=node.free_millicores - count * gang.millicores,
            free_memory_bytes=node.free_memory_bytes - count * gang.memory_bytes,
        )
    return Placement(None, tuple(after))


def _refusal(
    gang: ExecutorGang, usable: Iterable[tuple[int, NodeView]], excluded: Counter[str]
) -> str:
    size = f"{format_memory(gang.memory_bytes // (1024 * 1024))}"
    if gang.millicores:
        cores = gang.millicores / 1000
        size += f" and {cores:g} {'core' if cores == 1 else 'cores'}"
    usable_list = list(usable)
    head = (
        f"no schedulable nodes with room for {gang.count} executors of {size}"
        if gang.count > 1
        else f"no schedulable node with room for an executor of {size}"
    )
    parts = []
    if usable_list:
        room = sum(_capacity(node, gang) for _, node in usable_list)
        parts.append(
            f"{len(usable_list)} {_nodes(len(usable_list))} fit with room for {room}"
            if room
            else f"{len(usable_list)} {_nodes(len(usable_list))} without free room"
        )
    for why, count in sorted(excluded.items(), key=lambda item: (-item[1], item[0])):
        parts.append(f"{count} {_nodes(count)} {why}")
    if not parts:
        parts.append("the cluster has no nodes")
    return f"{head}: " + ", ".join(parts)


def _nodes(count: int) -> str:
    return "node" if count == 1 else "nodes"


class NodeSource(Protocol):
    """What the admit step asks the host about clusters whose nodes it watches."""

    def node_views(self) -> Mapping[str, Sequence[NodeView]]:
        """cluster name -> its nodes now (executors already promised to started jobs taken
        out); clusters absent are not node-aware, or not seen yet."""
        ...

    def gang_of(self, cluster: str, spec: JobSpec) -> ExecutorGang | None:
        """The executors a job on `cluster` must fit before it starts."""
        ...
