"""Warm-pool planning (``chidori.domain.warm_planning``): unit tests for each rule, property
tests for the invariants, and the admit step applying a plan in the store (SQLite and
PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from chidori.domain.admission import (
    Candidate,
    Decision,
    Limit,
    Limits,
    Resources,
    Usage,
    admit,
    room_for,
)
from chidori.domain.limits import LimitsDoc
from chidori.domain.spec import JobSpec
from chidori.domain.warm import WarmPoolConfig, warm_demand
from chidori.domain.warm_planning import (
    NO_IDLE_DRIVER,
    WarmDriver,
    WarmPlan,
    WarmState,
    beyond_size,
    cold_notes,
    hand_to_warm,
    warm_changes,
)
from chidori.store import Database, JobRepository
from chidori.store.admission import AdmissionStore
from chidori.store.models import WarmDriverRow

GB = 1024
T0 = datetime(2026, 12, 1, tzinfo=UTC)
POOL = WarmPoolConfig(size=2, driver_memory="1g", driver_cores=1)
PLAN = WarmPlan({"local": POOL}, {"local": {}})
WARM_OK = JobSpec.model_validate({"kind": "spark", "application": "app.py"})
COLD = JobSpec.model_validate({"kind": "python", "application": "train.py"})


def candidate(job_id: int, cluster: str = "local", priority: int = 0) -> Candidate:
    return Candidate(job_id, "default", cluster, priority, Resources(1, GB, 1))


def driver(
    warm_id: str,
    server: str = "s1",
    cluster: str = "local",
    state: WarmState = WarmState.IDLE,
    age: int = 0,
) -> WarmDriver:
    return WarmDriver(
        warm_id, server, cluster, state, Resources(1, GB, 1), None, T0 + timedelta(seconds=age)
    )


# ---- unit tests ----------------------------------------------------------------------------


def test_jobs_go_to_idle_drivers_of_their_cluster_in_admission_order() -> None:
    jobs = [candidate(1), candidate(2, priority=5), candidate(3, cluster="other")]
    specs = {1: WARM_OK, 2: WARM_OK, 3: WARM_OK}
    handover = hand_to_warm(jobs, specs, [driver("w1")], PLAN)
    assert handover.handed == {2: "w1"}  # the higher priority job first; one driver, one job
    credited = {c.job_id: c.credit for c in handover.candidates}
    assert credited[2] == Resources(1, GB, 1) and credited[1] == Resources()


def test_a_job_that_cannot_run_warm_says_why_and_leaves_the_driver_free() -> None:
    handover = hand_to_warm(
        [candidate(1), candidate(2)], {1: COLD, 2: WARM_OK}, [driver("w1")], PLAN
    )
    assert handover.handed == {2: "w1"}
    assert "python" in handover.notes[1]


def test_admitted_jobs_of_a_pooled_cluster_with_no_idle_driver_start_cold_with_a_reason() -> None:
    started = [candidate(1), candidate(2), candidate(3, cluster="other")]
    handover = hand_to_warm(started, {}, [], PLAN)
    notes = cold_notes(started, {1: WARM_OK, 2: COLD}, handover, {"local"}, PLAN)
    assert notes[1] == NO_IDLE_DRIVER and "python" in notes[2] and 3 not in notes


def test_a_smaller_pool_retires_this_servers_newest_drivers() -> None:
    drivers = [driver("old", age=0), driver("new", age=9), driver("theirs", server="s2")]
    assert beyond_size("s1", {"local": 1}, drivers) == ["new"]
    assert beyond_size("s1", {}, drivers) == ["old", "new"]


def test_pools_are_topped_up_only_while_they_fit() -> None:
    decision = Decision([], {}, usage=Usage(Resources(1, GB, 1), {"local": Resources(1, GB, 1)}))
    roomy = warm_changes("s1", PLAN, {"local": 2}, [], [], decision, Limits())
    assert [cluster for cluster, _ in roomy.reserve] == ["local", "local"]
    tight = Limits(Limit(max_running_jobs=2))
    assert len(warm_changes("s1", PLAN, {"local": 2}, [], [], decision, tight).reserve) == 1


def test_jobs_short_of_room_retire_warm_drivers_and_stop_the_top_up() -> None:
    full = Usage(Resources(2, 2 * GB, 2), {"local": Resources(2, 2 * GB, 2)})
    waiting = [candidate(7)]
    decision = Decision([], {7: "global running-jobs limit"}, [7], full)
    changes = warm_changes(
        "s1", PLAN, {"local": 2}, [driver("w1"), driver("w2")], waiting, decision,
        Limits(Limit(max_running_jobs=2)),
    )  # fmt: skip
    assert changes.reserve == [] and len(changes.retire) == 1


# ---- properties ----------------------------------------------------------------------------

clusters = st.sampled_from(["local", "other"])
drivers_st = st.lists(
    st.builds(
        driver,
        warm_id=st.uuids().map(str),
        server=st.sampled_from(["s1", "s2"]),
        cluster=clusters,
        state=st.sampled_from(list(WarmState)),
        age=st.integers(0, 100),
    ),
    max_size=6,
    unique_by=lambda d: d.id,
)
candidates_st = st.lists(
    st.builds(candidate, job_id=st.integers(1, 50), cluster=clusters, priority=st.integers(-2, 2)),
    max_size=8,
    unique_by=lambda c: c.job_id,
)


@settings(max_examples=300, deadline=None)
@given(candidates_st, drivers_st, st.data())
def test_property_each_idle_driver_is_handed_at_most_once_to_a_job_of_its_cluster(
    jobs: list[Candidate], drivers: list[WarmDriver], data: st.DataObject
) -> None:
    specs = {c.job_id: data.draw(st.sampled_from([WARM_OK, COLD])) for c in jobs}
    idle = [d for d in drivers if d.state is WarmState.IDLE and d.server_id == "s1"]
    plan = WarmPlan({"local": POOL, "other": POOL}, {})
    handover = hand_to_warm(jobs, specs, idle, plan)
    assert sorted(c.job_id for c in handover.candidates) == sorted(c.job_id for c in jobs)
    assert len(set(handover.handed.values())) == len(handover.handed)
    by_id = {d.id: d for d in idle}
    cluster_of = {c.job_id: c.cluster for c in jobs}
    for job_id, warm_id in handover.handed.items():
        assert by_id[warm_id].cluster == cluster_of[job_id] and specs[job_id] is WARM_OK
    assert not set(handover.handed) & set(handover.notes)
    for c in handover.candidates:
        assert c.credit == (Resources(1, GB, 1) if c.job_id in handover.handed else Resources())


@settings(max_examples=300, deadline=None)
@given(
    drivers_st,
    st.dictionaries(clusters, st.integers(0, 4)),
    st.integers(0, 6),
    st.booleans(),
)
def test_property_warm_changes_keep_pools_at_size_and_limits_held(
    drivers: list[WarmDriver], sizes: dict[str, int], cap: int, short: bool
) -> None:
    plan = WarmPlan({"local": POOL, "other": POOL}, {})
    held = Resources()
    by_cluster: dict[str, Resources] = {}
    for d in drivers:
        held += d.held
        by_cluster[d.cluster] = by_cluster.get(d.cluster, Resources()) + d.held
    limits = Limits(Limit(max_running_jobs=cap))
    waiting = [candidate(99)] if short else []
    decision = Decision([], {}, [99] if short else [], Usage(held, by_cluster))
    changes = warm_changes("s1", plan, sizes, drivers, waiting, decision, limits)
    ids = {d.id: d for d in drivers}
    assert set(changes.retire) <= set(ids) and len(set(changes.retire)) == len(changes.retire)
    if short:
        assert changes.reserve == []
    # Never more than a pool's size of this server's live drivers, counting the new ones.
    for cluster in plan.pools:
        live = [
            d
            for d in drivers
            if d.server_id == "s1"
            and d.cluster == cluster
            and d.state is not WarmState.RETIRING
            and d.id not in changes.retire
        ]
        new = [c for c, _ in changes.reserve if c == cluster]
        assert len(live) + len(new) <= max(sizes.get(cluster, 0), len(live))
        if new:
            assert len(live) + len(new) <= sizes.get(cluster, 0)
    # What is reserved anew fits under the limits on top of what is held.
    usage = decision.usage
    for cluster, demand in changes.reserve:
        assert room_for(usage, limits, cluster, demand)
        usage = Usage(usage.total + demand, {**usage.by_cluster, cluster: demand}, {})
    # Only this server's drivers are retired for size; others only to make room.
    if not short:
        assert all(ids[w].server_id == "s1" for w in changes.retire)


# ---- the admit step applying a plan, in the store ------------------------------------------


def _add_driver(store: Database, warm_id: str, state: WarmState, server: str = "s1") -> None:
    demand = warm_demand(POOL)
    with store.writing() as session:
        session.add(
            WarmDriverRow(
                id=warm_id,
                server_id=server,
                cluster="local",
                memory_mb=demand.memory_mb,
                cores=demand.cores,
                state=state.value,
                created_at=store.now(),
            )
        )


def test_the_admit_step_hands_a_job_to_an_idle_driver_and_tops_the_pool_up(
    store: Database,
) -> None:
    jobs = JobRepository(store)
    admission = AdmissionStore(store, LimitsDoc(max_running_jobs=4))
    _add_driver(store, "w-idle", WarmState.IDLE)
    warm_job, _ = jobs.create_job(WARM_OK, "alice")
    cold_job, _ = jobs.create_job(COLD, "alice")
    result = admission.admit("s1", "host", ["local"], 30, warm=PLAN)
    by_job = {c.job.id: c for c in result.claims}
    assert by_job[warm_job.id].warm_driver == "w-idle"
    assert by_job[cold_job.id].warm_driver is None
    assert "python" in (jobs.get_job(cold_job.id).start_note or "")
    # The idle driver's reservation went to the job; the pool (size 2) is refilled: 4 slots,
    # 2 jobs running, so two new drivers fit.
    assert len(result.warm_to_start) == 2
    drivers = admission.warm_drivers("s1")
    assert "w-idle" not in {d.id for d in drivers}
    assert {d.state for d in drivers} == {WarmState.STARTING}


def test_the_admit_step_retires_a_warm_driver_that_stands_in_a_jobs_way(store: Database) -> None:
    jobs = JobRepository(store)
    admission = AdmissionStore(store, LimitsDoc(max_running_jobs=2))
    _add_driver(store, "w1", WarmState.IDLE, server="s2")
    _add_driver(store, "w2", WarmState.IDLE, server="s2")
    waiting, _ = jobs.create_job(COLD, "alice")
    result = admission.admit("s1", "host", ["local"], 30, warm=PLAN)
    assert result.claims == [] and result.warm_to_start == []
    states = {d.id: d.state for d in admission.warm_drivers()}
    assert sorted(states.values()) == [WarmState.IDLE, WarmState.RETIRING]
    assert jobs.get_job(waiting.id).waiting_reason


def test_admit_with_no_pools_matches_the_pure_decision(store: Database) -> None:
    """The step applies exactly what `admit()` decides from the same snapshot."""
    jobs = JobRepository(store)
    ids = [jobs.create_job(COLD, "alice")[0].id for _ in range(5)]
    admission = AdmissionStore(store, LimitsDoc(max_running_jobs=3))
    expected = admit([candidate(i) for i in ids], Usage(), Limits(Limit(3)), {})
    result = admission.admit("s1", "host", ["local"], 30)
    assert sorted(c.job.id for c in result.claims) == sorted(expected.admitted)
