"""Node-aware admission (chidori.domain.nodes): pure placement of an executor gang, and its
use by `admit()` (a job waits with the nodes' reason; jobs of one step share the nodes)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from chidori.backends.kubernetes.views import executor_summary, node_views, quantity
from chidori.domain.admission import Candidate, Limits, Resources, Usage, admit
from chidori.domain.nodes import ExecutorGang, NodeView, Taint, Toleration, place

GIB = 1024**3


def node(name: str, cores: float = 4, memory_gib: float = 16, **kwargs: object) -> NodeView:
    return NodeView(
        name=name,
        free_millicores=int(cores * 1000),
        free_memory_bytes=int(memory_gib * GIB),
        **kwargs,  # type: ignore[arg-type]
    )


def gang(count: int, cores: float = 1, memory_gib: float = 2, **kwargs: object) -> ExecutorGang:
    return ExecutorGang(count, int(cores * 1000), int(memory_gib * GIB), **kwargs)  # type: ignore[arg-type]


def test_a_gang_that_fits_takes_its_room_from_the_nodes() -> None:
    placed = place(gang(3, memory_gib=4), [node("a", memory_gib=8), node("b", memory_gib=8)])
    assert placed.reason is None
    assert sum(n.free_memory_bytes for n in placed.nodes) == 16 * GIB - 12 * GIB


def test_all_or_nothing_with_the_reason_naming_each_excluded_node() -> None:
    nodes = [
        node("a", pressures=("DiskPressure",)),
        node("b", pressures=("DiskPressure",)),
        node("c", unschedulable=True),
        node("d", memory_gib=4),
    ]
    placed = place(gang(4, memory_gib=8), nodes)
    assert placed.nodes == tuple(nodes)  # nothing taken
    assert placed.reason == (
        "no schedulable nodes with room for 4 executors of 8g and 1 core: "
        "1 node without free room, 2 nodes under DiskPressure, 1 node cordoned"
    )


def test_taints_selectors_and_readiness() -> None:
    spot = Taint("spot", "true", "NoSchedule")
    nodes = [
        node("spot", taints=(spot,), labels={"pool": "spot"}),
        node("down", ready=False, labels={"pool": "spot"}),
        node("other", labels={"pool": "general"}),
    ]
    plain = gang(1, node_selector={"pool": "spot"})
    assert place(plain, nodes).reason == (
        "no schedulable node with room for an executor of 2g and 1 core: "
        "1 node not Ready, 1 node not matching the node selector, 1 node tainted spot=true"
    )
    tolerant = gang(
        1,
        node_selector={"pool": "spot"},
        tolerations=(Toleration("spot", "Equal", "true", "NoSchedule"),),
    )
    assert place(tolerant, nodes).reason is None
    # The taint the node controller adds for a condition reads as the condition.
    pressured = node("p", taints=(Taint("node.kubernetes.io/disk-pressure", "", "NoSchedule"),))
    assert "1 node under DiskPressure" in str(place(gang(1), [pressured]).reason)
    assert place(gang(0), []).reason is None


@given(
    st.lists(st.tuples(st.integers(0, 8), st.integers(0, 32)), max_size=6),
    st.integers(1, 12),
    st.integers(1, 4),
    st.integers(1, 8),
)
def test_placement_never_overcommits_a_node(
    sizes: list[tuple[int, int]], count: int, cores: int, memory: int
) -> None:
    nodes = [node(f"n{i}", c, m) for i, (c, m) in enumerate(sizes)]
    placed = place(gang(count, cores, memory), nodes)
    assert all(n.free_millicores >= 0 and n.free_memory_bytes >= 0 for n in placed.nodes)
    room = sum(min(c // cores, m // memory) for c, m in sizes)
    assert (placed.reason is None) == (room >= count)
    if placed.reason is None:
        taken = sum(n.free_memory_bytes for n in nodes) - sum(
            n.free_memory_bytes for n in placed.nodes
        )
        assert taken == count * memory * GIB


def test_admit_holds_a_job_whose_executors_do_not_fit_and_shares_the_nodes() -> None:
    nodes = {"k8s": [node("a", cores=2, memory_gib=8)]}
    first = Candidate(1, "default", "k8s", 0, Resources(1, 1024, 1), gang=gang(2, memory_gib=3))
    second = Candidate(2, "default", "k8s", 0, Resources(1, 1024, 1), gang=gang(1, memory_gib=3))
    local = Candidate(3, "default", "local", 0, Resources(1, 1024, 1))
    decision = admit([first, second, local], Usage(), Limits(), {}, nodes)
    assert decision.admitted == [1, 3]
    assert decision.waiting[2].startswith("no schedulable node with room for an executor")
    # Not node-aware (no views for the cluster): admitted on the limits alone.
    assert admit([second], Usage(), Limits(), {}).admitted == [2]


def test_node_views_from_api_objects() -> None:
    nodes = [
        {
            "metadata": {"name": "n1", "labels": {"pool": "spark"}},
            "spec": {"taints": [{"key": "spot", "value": "true", "effect": "NoSchedule"}]},
            "status": {
                "allocatable": {"cpu": "3500m", "memory": "8Gi"},
                "conditions": [
                    {"type": "Ready", "status": "True"},
                    {"type": "DiskPressure", "status": "True"},
                ],
            },
        }
    ]
    pods = [
        {
            "spec": {
                "nodeName": "n1",
                "containers": [{"resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}}],
            },
            "status": {"phase": "Running"},
        },
        {  # finished pods hold nothing
            "spec": {
                "nodeName": "n1",
                "containers": [{"resources": {"requests": {"cpu": "2", "memory": "2Gi"}}}],
            },
            "status": {"phase": "Succeeded"},
        },
    ]
    (view,) = node_views(nodes, pods)
    assert view.free_millicores == 3000
    assert view.free_memory_bytes == 7 * GIB
    assert view.pressures == ("DiskPressure",)
    assert view.taints == (Taint("spot", "true", "NoSchedule"),)
    assert quantity("1500M") == 1.5e9 and quantity("250m") == 0.25 and quantity("1e3") == 1000


def test_executor_summary_says_why_a_pod_is_pending() -> None:
    pod = {
        "metadata": {"name": "chidori-1-1-exec-1", "labels": {"spark-exec-id": "1"}},
        "spec": {},
        "status": {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/2 nodes are available: 2 Insufficient memory.",
                }
            ],
        },
    }
    summary = executor_summary(pod)
    assert summary["phase"] == "Pending" and summary["executor_id"] == "1"
    assert summary["reason"] == "Unschedulable: 0/2 nodes are available: 2 Insufficient memory."


def test_the_warm_driver_reads_the_same_hand_over_key_the_domain_writes() -> None:
    # runtime/warm_driver.py imports nothing of Chidori, so it names the key again.
    from chidori.domain import warm
    from chidori.runtime import warm_driver

    assert warm_driver.EXECUTORS_AT_HANDOVER == warm.EXECUTORS_AT_HANDOVER
