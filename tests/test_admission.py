"""Admission (``chidori.domain.admission.admit``): limits, quotas, gangs, ordering, fair share.

Unit tests name one behaviour each; the property tests check the invariants against an
independent oracle (``Ledger``) for random candidates, usage, limits and event streams.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chidori.domain.admission import (
    Candidate,
    Decision,
    Limit,
    Limits,
    QueueConfig,
    Resources,
    Usage,
    WarmHold,
    admit,
    job_demand,
    never_fits,
    warm_to_retire,
)

GB = 1024
RESOURCES = ("jobs", "memory_mb", "cores")
LIMIT_FIELDS = {"jobs": "max_running_jobs", "memory_mb": "max_memory_mb", "cores": "max_cores"}
REASON_RESOURCE = {"running-jobs": "jobs", "memory": "memory_mb", "cores": "cores"}
REASON = re.compile(
    r"^(?:(?P<global>global)|cluster '(?P<cluster>[^']*)'|queue '(?P<queue>[^']*)') "
    r"(?P<resource>running-jobs|memory|cores) limit"
)


def job(
    job_id: int,
    queue: str = "default",
    *,
    cluster: str = "local",
    priority: int = 0,
    memory_mb: int = GB,
    cores: int = 1,
) -> Candidate:
    return Candidate(job_id, queue, cluster, priority, Resources(1, memory_mb, cores))


def usage_of(running: Iterable[Candidate]) -> Usage:
    total = Resources()
    by_cluster: dict[str, Resources] = {}
    by_queue: dict[str, Resources] = {}
    for c in running:
        total += c.demand
        by_cluster[c.cluster] = by_cluster.get(c.cluster, Resources()) + c.demand
        by_queue[c.queue] = by_queue.get(c.queue, Resources()) + c.demand
    return Usage(total, by_cluster, by_queue)


def per_queue(decision: Decision, candidates: Iterable[Candidate]) -> Counter[str]:
    queue_of = {c.job_id: c.queue for c in candidates}
    return Counter(queue_of[i] for i in decision.admitted)


# -- an independent oracle -----------------------------------------------------------------

Scope = tuple[str, str]  # ("global", ""), ("cluster", name) or ("queue", name)


def scopes(c: Candidate) -> list[Scope]:
    return [("global", ""), ("cluster", c.cluster), ("queue", c.queue)]


def limit_of(scope: Scope, limits: Limits, queues: Mapping[str, QueueConfig]) -> Limit:
    kind, name = scope
    if kind == "global":
        return limits.total
    if kind == "cluster":
        return limits.clusters.get(name, Limit())
    queue = queues.get(name)
    return queue.quota if queue is not None else Limit()


def cap(limit: Limit, resource: str) -> int | None:
    value: int | None = getattr(limit, LIMIT_FIELDS[resource])
    return value


@dataclass
class Ledger:
    """What each scope holds, recomputed from scratch (not by the code under test)."""

    held: dict[Scope, Counter[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, running: Iterable[Candidate]) -> Ledger:
        ledger = cls()
        for c in running:
            ledger.add(c)
        return ledger

    def get(self, scope: Scope, resource: str) -> int:
        return self.held.get(scope, Counter())[resource]

    def add(self, c: Candidate) -> None:
        for scope in scopes(c):
            counter = self.held.setdefault(scope, Counter())
            for resource in RESOURCES:
                counter[resource] += getattr(c.demand, resource)

    def blockers(
        self, c: Candidate, limits: Limits, queues: Mapping[str, QueueConfig]
    ) -> set[tuple[Scope, str]]:
        """Every (scope, resource) whose cap `c` would exceed on top of what is held."""
        found = set()
        for scope in scopes(c):
            for resource in RESOURCES:
                most = cap(limit_of(scope, limits, queues), resource)
                if (
                    most is not None
                    and self.get(scope, resource) + getattr(c.demand, resource) > most
                ):
                    found.add((scope, resource))
        return found

    def fits(self, c: Candidate, limits: Limits, queues: Mapping[str, QueueConfig]) -> bool:
        return not self.blockers(c, limits, queues)

    def usage(self) -> Usage:
        def resources(counter: Counter[str]) -> Resources:
            return Resources(counter["jobs"], counter["memory_mb"], counter["cores"])

        return Usage(
            resources(self.held.get(("global", ""), Counter())),
            {n: resources(v) for (k, n), v in self.held.items() if k == "cluster"},
            {n: resources(v) for (k, n), v in self.held.items() if k == "queue"},
        )


def blocked_by(reason: str) -> tuple[Scope, str]:
    """The (scope, resource) a reason names, e.g. ``("cluster", "c1"), "memory_mb"``."""
    match = REASON.match(reason)
    assert match, f"reason does not name a limit: {reason!r}"
    if match["global"]:
        scope: Scope = ("global", "")
    elif match["cluster"] is not None:
        scope = ("cluster", match["cluster"])
    else:
        scope = ("queue", match["queue"])
    return scope, REASON_RESOURCE[match["resource"]]


def check_decision(
    candidates: list[Candidate],
    running: list[Candidate],
    limits: Limits,
    queues: Mapping[str, QueueConfig],
    decision: Decision,
) -> Ledger:
    """Invariants (b) and (c), plus reasons that are true; returns the ledger after."""
    ids = [c.job_id for c in candidates]
    admitted = set(decision.admitted)
    # (c) each candidate admitted once or waiting with a reason, never both
    assert len(decision.admitted) == len(admitted)
    assert admitted.isdisjoint(decision.waiting)
    assert admitted | set(decision.waiting) == set(ids)
    assert all(isinstance(r, str) and r for r in decision.waiting.values())

    by_id = {c.job_id: c for c in candidates}
    after = Ledger.of([*running, *(by_id[i] for i in decision.admitted)])
    for job_id, reason in decision.waiting.items():
        c = by_id[job_id]
        # (b) a waiting job really does not fit next to what runs and was admitted...
        blockers = after.blockers(c, limits, queues)
        assert blockers, f"job {job_id} waits ({reason}) but fits"
        # ... and the limit its reason names is one that blocks it
        assert blocked_by(reason) in blockers, (reason, blockers)
    return after


def check_within(
    before: Ledger,
    after: Ledger,
    admitted: list[Candidate],
    limits: Limits,
    queues: Mapping[str, QueueConfig],
) -> None:
    """(a) no cap is exceeded by new admissions; a cap already exceeded admits nothing."""
    touched = {scope for c in admitted for scope in scopes(c)}
    for scope in touched | set(before.held) | {("global", "")}:
        limit = limit_of(scope, limits, queues)
        for resource in RESOURCES:
            most = cap(limit, resource)
            if most is None:
                continue
            held_before, held_after = before.get(scope, resource), after.get(scope, resource)
            if held_before <= most:
                assert held_after <= most, (scope, resource, held_after, most)
            else:  # lowered below what runs: nothing new there
                assert scope not in touched, (scope, resource, held_before, most)
                assert held_after == held_before


# -- global limits -------------------------------------------------------------------------


def test_global_running_jobs_limit_admits_only_up_to_the_limit() -> None:
    candidates = [job(i) for i in range(1, 6)]
    decision = admit(candidates, usage_of([job(100)]), Limits(Limit(max_running_jobs=3)), {})
    assert decision.admitted == [1, 2]
    assert set(decision.waiting) == {3, 4, 5}


def test_global_memory_limit_counts_what_runs_and_what_is_admitted() -> None:
    candidates = [job(1, memory_mb=3 * GB), job(2, memory_mb=3 * GB), job(3, memory_mb=2 * GB)]
    usage = usage_of([job(100, memory_mb=3 * GB)])
    decision = admit(candidates, usage, Limits(Limit(max_memory_mb=8 * GB)), {})
    assert decision.admitted == [1, 3]  # 3g + 3g + 2g = 8g; job 2 would make 11g
    assert list(decision.waiting) == [2]


def test_global_cores_limit() -> None:
    candidates = [job(1, cores=5), job(2, cores=4), job(3, cores=3)]
    decision = admit(candidates, Usage(), Limits(Limit(max_cores=8)), {})
    assert decision.admitted == [1, 3]
    assert list(decision.waiting) == [2]


def test_limits_are_inclusive_a_job_filling_a_limit_exactly_is_admitted() -> None:
    candidates = [job(1, memory_mb=4 * GB, cores=4)]
    limits = Limits(Limit(max_running_jobs=1, max_memory_mb=4 * GB, max_cores=4))
    assert admit(candidates, Usage(), limits, {}).admitted == [1]


def test_no_limits_admit_everyone_and_no_candidates_admit_nothing() -> None:
    candidates = [job(i, memory_mb=512 * GB, cores=1000) for i in range(1, 4)]
    assert admit(candidates, Usage(), Limits(), {}) == Decision([1, 2, 3], {})
    assert admit([], usage_of([job(1)]), Limits(Limit(0, 0, 0)), {}) == Decision([], {})


# -- per-cluster limits and per-queue quotas -----------------------------------------------


def test_cluster_limits_apply_only_to_their_cluster() -> None:
    candidates = [job(i, cluster="small" if i % 2 else "big") for i in range(1, 7)]
    limits = Limits(clusters={"small": Limit(max_running_jobs=1, max_cores=10)})
    decision = admit(candidates, Usage(), limits, {})
    assert decision.admitted == [1, 2, 4, 6]
    assert set(decision.waiting) == {3, 5}
    assert all(
        r.startswith("cluster 'small' running-jobs limit") for r in decision.waiting.values()
    )


def test_cluster_memory_limit_counts_that_clusters_usage_only() -> None:
    running = [job(100, cluster="a", memory_mb=6 * GB), job(101, cluster="b", memory_mb=6 * GB)]
    candidates = [job(1, cluster="a", memory_mb=4 * GB), job(2, cluster="b", memory_mb=1 * GB)]
    limits = Limits(clusters={"a": Limit(max_memory_mb=8 * GB), "b": Limit(max_memory_mb=8 * GB)})
    decision = admit(candidates, usage_of(running), limits, {})
    assert decision.admitted == [2]
    assert decision.waiting[1].startswith("cluster 'a' memory limit 8g")


def test_queue_quota_caps_its_queue_and_leaves_others_free() -> None:
    queues = {"etl": QueueConfig("etl", quota=Limit(max_running_jobs=2, max_cores=3))}
    candidates = [job(i, "etl", cores=1) for i in range(1, 5)] + [job(9, "adhoc", cores=8)]
    decision = admit(candidates, usage_of([job(100, "etl")]), Limits(), queues)
    assert sorted(decision.admitted) == [1, 9]
    assert set(decision.waiting) == {2, 3, 4}
    assert decision.waiting[2].startswith("queue 'etl' running-jobs limit 2")


def test_queue_memory_quota() -> None:
    queues = {"etl": QueueConfig("etl", quota=Limit(max_memory_mb=4 * GB))}
    candidates = [job(1, "etl", memory_mb=3 * GB), job(2, "etl", memory_mb=2 * GB)]
    decision = admit(candidates, Usage(), Limits(), queues)
    assert decision.admitted == [1]
    assert decision.waiting[2].startswith("queue 'etl' memory limit 4g")


def test_a_queue_without_configuration_has_no_quota_and_default_rank() -> None:
    queues = {"etl": QueueConfig("etl", quota=Limit(max_running_jobs=0))}
    candidates = [job(1, "etl"), job(2, "unknown"), job(3, "unknown")]
    decision = admit(candidates, Usage(), Limits(), queues)
    assert decision.admitted == [2, 3]
    assert list(decision.waiting) == [1]


# -- gangs and head-of-line blocking -------------------------------------------------------


def test_job_demand_is_the_driver_plus_every_executor() -> None:
    demand = job_demand(
        driver_memory_mb=2 * GB,
        driver_cores=1,
        executor_instances=4,
        executor_memory_mb=3 * GB,
        executor_cores=2,
    )
    assert demand == Resources(jobs=1, memory_mb=14 * GB, cores=9)
    assert job_demand(GB, 1, 0, 8 * GB, 4) == Resources(1, GB, 1)


def test_gang_that_does_not_fit_waits_whole_and_a_smaller_job_behind_it_starts() -> None:
    big = Candidate(1, "etl", "local", 5, job_demand(2 * GB, 1, 4, 4 * GB, 2))  # 18g, 9 cores
    small = Candidate(2, "etl", "local", 0, job_demand(GB, 1, 1, 2 * GB, 1))  # 3g, 2 cores
    later = Candidate(3, "etl", "local", 0, job_demand(GB, 1, 2, 2 * GB, 1))  # 5g, 3 cores
    running = [job(100, memory_mb=4 * GB, cores=2)]
    limits = Limits(Limit(max_memory_mb=16 * GB, max_cores=8))
    decision = admit([big, small, later], usage_of(running), limits, {})
    # the big gang (first by priority) would fit only in part: it waits, whole
    assert 1 in decision.waiting
    assert decision.waiting[1] == "global memory limit 16g: needs 18g, 12g free"
    # no head-of-line blocking: the jobs behind it start
    assert decision.admitted == [2, 3]


def test_a_gang_that_fits_memory_but_not_cores_waits() -> None:
    gang = Candidate(1, "etl", "local", 0, job_demand(GB, 1, 3, GB, 4))  # 4g, 13 cores
    decision = admit([gang], Usage(), Limits(Limit(max_memory_mb=64 * GB, max_cores=12)), {})
    assert decision.admitted == []
    assert decision.waiting[1] == "global cores limit 12: needs 13, 12 free"


def test_a_big_job_waiting_does_not_hold_back_other_queues_or_clusters() -> None:
    queues = {"etl": QueueConfig("etl", priority=10), "adhoc": QueueConfig("adhoc")}
    candidates = [
        job(1, "etl", memory_mb=100 * GB),
        job(2, "adhoc", memory_mb=GB),
        job(3, "etl", cluster="other", memory_mb=2 * GB),
    ]
    limits = Limits(Limit(max_memory_mb=32 * GB))
    decision = admit(candidates, Usage(), limits, queues)
    assert decision.admitted == [3, 2]
    assert list(decision.waiting) == [1]


# -- ordering ------------------------------------------------------------------------------


def test_within_a_queue_higher_job_priority_first_then_first_in_first_out() -> None:
    candidates = [
        job(5, "etl", priority=0),
        job(3, "etl", priority=0),
        job(8, "etl", priority=2),
        job(4, "etl", priority=-1),
        job(6, "etl", priority=2),
        job(1, "etl", priority=0),
    ]
    decision = admit(candidates, Usage(), Limits(Limit(max_running_jobs=4)), {})
    assert decision.admitted == [6, 8, 1, 3]
    assert set(decision.waiting) == {4, 5}
    everyone = admit(candidates, Usage(), Limits(), {})
    assert everyone.admitted == [6, 8, 1, 3, 5, 4]


def test_a_higher_priority_queue_is_served_first() -> None:
    queues = {
        "low": QueueConfig("low", priority=0, weight=100),
        "high": QueueConfig("high", priority=5, weight=1),
    }
    candidates = [job(1, "low"), job(2, "low"), job(3, "high"), job(4, "high"), job(5, "high")]
    running = [job(100 + i, "high") for i in range(10)]  # high already has far more than its share
    decision = admit(candidates, usage_of(running), Limits(Limit(max_running_jobs=14)), queues)
    assert decision.admitted == [3, 4, 5, 1]
    assert list(decision.waiting) == [2]


def test_a_higher_priority_queue_that_is_full_lets_lower_queues_through() -> None:
    queues = {
        "high": QueueConfig("high", priority=5, quota=Limit(max_running_jobs=1)),
        "low": QueueConfig("low"),
    }
    candidates = [job(1, "high"), job(2, "high"), job(3, "low")]
    decision = admit(candidates, Usage(), Limits(Limit(max_running_jobs=3)), queues)
    assert decision.admitted == [1, 3]
    assert decision.waiting[2].startswith("queue 'high' running-jobs limit 1")


# -- weighted fair share -------------------------------------------------------------------


FAIR_QUEUES = {"a": QueueConfig("a", weight=3), "b": QueueConfig("b", weight=1)}


def test_weighted_fair_share_first_decision_on_an_empty_cluster_admits_6_and_2() -> None:
    candidates = [job(i, "a") for i in range(1, 41)] + [job(i, "b") for i in range(41, 81)]
    decision = admit(candidates, Usage(), Limits(Limit(max_running_jobs=8)), FAIR_QUEUES)
    assert per_queue(decision, candidates) == {"a": 6, "b": 2}
    # FIFO within each queue
    assert sorted(decision.admitted) == [1, 2, 3, 4, 5, 6, 41, 42]
    assert len(decision.waiting) == 72


def test_weighted_fair_share_counts_jobs_already_running() -> None:
    running = [job(100 + i, "a") for i in range(7)]  # a holds 7: 7/3 per unit of weight
    candidates = [job(i, "a") for i in range(1, 11)] + [job(i, "b") for i in range(11, 21)]
    limits = Limits(Limit(max_running_jobs=10))
    decision = admit(candidates, usage_of(running), limits, FAIR_QUEUES)
    assert per_queue(decision, candidates) == {"b": 3}  # b at 0, 1 and 2 is still below 7/3


def test_weighted_fair_share_over_many_rounds_splits_admissions_3_to_1() -> None:
    """Finish one random running job, then admit; repeat. Each queue always has work.

    The admitted counts split 3:1 in expectation. Over 2500 rounds the share of queue a is
    binomial-like with a standard deviation of about 0.9 percentage points; the tolerance
    is 0.75 +/- 0.03 (about 3.5 sigma), and the seeds are fixed, so this is repeatable.
    """
    limits = Limits(Limit(max_running_jobs=8))
    for seed in (1, 2):
        rng = random.Random(seed)
        next_id = 1
        waiting: list[Candidate] = []
        running: list[Candidate] = []
        admitted: Counter[str] = Counter()

        for round_ in range(2500):
            if round_:
                running.pop(rng.randrange(len(running)))
            for name in ("a", "b"):  # both queues always have 8 jobs waiting
                while sum(c.queue == name for c in waiting) < 8:
                    waiting.append(job(next_id, name))
                    next_id += 1
            decision = admit(waiting, usage_of(running), limits, FAIR_QUEUES)
            chosen = set(decision.admitted)
            running += [c for c in waiting if c.job_id in chosen]
            waiting = [c for c in waiting if c.job_id not in chosen]
            admitted.update(per_queue(decision, running))
            assert len(running) == 8
        share = admitted["a"] / (admitted["a"] + admitted["b"])
        assert share == pytest.approx(0.75, abs=0.03), (seed, admitted)


def test_weighted_fair_share_with_equal_weights_alternates() -> None:
    queues = {"a": QueueConfig("a"), "b": QueueConfig("b")}
    candidates = [job(i, "a") for i in range(1, 11)] + [job(i, "b") for i in range(11, 21)]
    decision = admit(candidates, Usage(), Limits(Limit(max_running_jobs=6)), queues)
    assert per_queue(decision, candidates) == {"a": 3, "b": 3}


# -- reasons and never_fits ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("limits", "quota", "expected"),
    [
        (Limits(Limit(max_running_jobs=1)), Limit(), "global running-jobs limit 1 reached"),
        (Limits(Limit(max_memory_mb=5 * GB)), Limit(), "global memory limit 5g: needs 2g, 1g free"),
        (Limits(Limit(max_cores=4)), Limit(), "global cores limit 4: needs 3, 1 free"),
        (
            Limits(clusters={"c1": Limit(max_running_jobs=1)}),
            Limit(),
            "cluster 'c1' running-jobs limit 1 reached",
        ),
        (
            Limits(clusters={"c1": Limit(max_memory_mb=4 * GB + 512)}),
            Limit(),
            "cluster 'c1' memory limit 4608m: needs 2g, 512m free",
        ),
        (
            Limits(clusters={"c1": Limit(max_cores=3)}),
            Limit(),
            "cluster 'c1' cores limit 3: needs 3, 0 free",
        ),
        (Limits(), Limit(max_running_jobs=1), "queue 'q' running-jobs limit 1 reached"),
        (Limits(), Limit(max_memory_mb=4 * GB), "queue 'q' memory limit 4g: needs 2g, 0 free"),
        (Limits(), Limit(max_cores=5), "queue 'q' cores limit 5: needs 3, 2 free"),
    ],
)
def test_the_reason_names_the_blocking_limit_and_resource(
    limits: Limits, quota: Limit, expected: str
) -> None:
    running = job(100, "q", cluster="c1", memory_mb=4 * GB, cores=3)
    waiting = job(1, "q", cluster="c1", memory_mb=2 * GB, cores=3)
    decision = admit([waiting], usage_of([running]), limits, {"q": QueueConfig("q", quota=quota)})
    assert decision.admitted == []
    assert decision.waiting[1].startswith(expected), decision.waiting[1]


def test_the_reason_names_the_first_limit_that_blocks_global_then_cluster_then_queue() -> None:
    tight = Limit(max_running_jobs=0)
    candidate = job(1, "q", cluster="c1")
    queues = {"q": QueueConfig("q", quota=tight)}
    both = Limits(tight, {"c1": tight})
    assert admit([candidate], Usage(), both, queues).waiting[1].startswith("global")
    cluster = Limits(clusters={"c1": tight})
    assert admit([candidate], Usage(), cluster, queues).waiting[1].startswith("cluster 'c1'")


def test_never_fits_names_a_whole_limit_smaller_than_the_demand() -> None:
    queue = QueueConfig("q", quota=Limit(max_cores=16))
    demand = job_demand(2 * GB, 1, 10, 4 * GB, 2)  # 42g, 21 cores
    assert never_fits(demand, "c1", queue, Limits(Limit(max_memory_mb=32 * GB))) == (
        "global memory limit 32g: needs 42g, 32g free"
    )
    cluster_small = Limits(Limit(max_memory_mb=64 * GB), {"c1": Limit(max_cores=20)})
    assert never_fits(demand, "c1", queue, cluster_small) == (
        "cluster 'c1' cores limit 20: needs 21, 20 free"
    )
    assert never_fits(demand, "c2", queue, cluster_small) == (
        "queue 'q' cores limit 16: needs 21, 16 free"
    )
    # a running-jobs cap of 0 pauses admission; it does not make a job impossible
    paused = Limit(max_running_jobs=0)
    no_jobs = QueueConfig("q", quota=paused)
    assert never_fits(demand, "c1", no_jobs, Limits(paused, {"c1": paused})) is None
    waiting = admit([Candidate(1, "q", "c1", 0, demand)], Usage(), Limits(), {"q": no_jobs})
    assert waiting.waiting[1].startswith("queue 'q' running-jobs limit 0")


def test_never_fits_is_none_for_a_demand_that_fits_an_empty_cluster() -> None:
    demand = Resources(1, 8 * GB, 8)
    exact = Limit(max_running_jobs=1, max_memory_mb=8 * GB, max_cores=8)
    limits = Limits(exact, {"c1": exact})
    assert never_fits(demand, "c1", QueueConfig("q", quota=exact), limits) is None
    assert never_fits(demand, "c1", QueueConfig("q"), Limits()) is None
    # full right now is not "never": admit makes it wait, never_fits does not refuse it
    assert admit([Candidate(1, "q", "c1", 0, demand)], usage_of([job(9)]), limits, {}).waiting


def test_limits_lowered_below_usage_admit_nothing_there_but_elsewhere_still_admit() -> None:
    running = [job(100 + i, "etl", cluster="a", memory_mb=4 * GB) for i in range(4)]
    limits = Limits(
        Limit(max_running_jobs=100),
        {"a": Limit(max_memory_mb=8 * GB)},  # a holds 16g
    )
    candidates = [job(1, "etl", cluster="a", memory_mb=512), job(2, "etl", cluster="b")]
    decision = admit(candidates, usage_of(running), limits, {})
    assert decision.admitted == [2]
    assert decision.waiting[1] == "cluster 'a' memory limit 8g: needs 512m, 0 free"


# -- properties ----------------------------------------------------------------------------

CLUSTERS = ("c1", "c2", "c3")
QUEUE_NAMES = ("q1", "q2", "q3", "q4")  # q4 is never configured
PROPERTY_SETTINGS = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

caps_jobs = st.none() | st.integers(0, 8)
caps_memory = st.none() | st.integers(0, 96).map(lambda n: n * 512)  # up to 48g
caps_cores = st.none() | st.integers(0, 40)
limit_st = st.builds(Limit, caps_jobs, caps_memory, caps_cores)
limits_st = st.builds(Limits, limit_st, st.dictionaries(st.sampled_from(CLUSTERS), limit_st))
queues_st = st.fixed_dictionaries(
    {
        name: st.builds(
            QueueConfig,
            st.just(name),
            st.integers(-2, 2),
            st.sampled_from([0.5, 1.0, 2.0, 3.0]),
            limit_st,
        )
        for name in QUEUE_NAMES[:3]
    }
)
demand_st = st.builds(
    job_demand,
    st.sampled_from([512, GB, 2 * GB, 4 * GB]),
    st.integers(1, 4),
    st.integers(0, 6),
    st.sampled_from([512, GB, 2 * GB, 4 * GB, 8 * GB]),
    st.integers(1, 4),
)
job_st = st.tuples(
    st.sampled_from(QUEUE_NAMES), st.sampled_from(CLUSTERS), st.integers(-3, 3), demand_st
)


def candidates_from(draws: list[tuple[str, str, int, Resources]], first_id: int) -> list[Candidate]:
    return [
        Candidate(first_id + i, queue, cluster, priority, demand)
        for i, (queue, cluster, priority, demand) in enumerate(draws)
    ]


@st.composite
def situations(
    draw: st.DrawFn,
) -> tuple[list[Candidate], list[Candidate], Limits, dict[str, QueueConfig]]:
    """Candidates, running jobs that fit the limits, limits and queues."""
    limits = draw(limits_st)
    queues = draw(queues_st)
    running: list[Candidate] = []
    ledger = Ledger()
    for c in candidates_from(draw(st.lists(job_st, max_size=8)), 10_000):
        if ledger.fits(c, limits, queues):  # usage within limits
            ledger.add(c)
            running.append(c)
    candidates = candidates_from(draw(st.lists(job_st, max_size=16)), 1)
    draw(st.randoms()).shuffle(candidates)  # arrival order must not matter
    return candidates, running, limits, queues


@PROPERTY_SETTINGS
@given(situations())
def test_property_admissions_stay_within_every_limit_and_waiting_jobs_do_not_fit(
    situation: tuple[list[Candidate], list[Candidate], Limits, dict[str, QueueConfig]],
) -> None:
    candidates, running, limits, queues = situation
    before = Ledger.of(running)
    decision = admit(candidates, before.usage(), limits, queues)
    by_id = {c.job_id: c for c in candidates}
    after = check_decision(candidates, running, limits, queues, decision)  # (b), (c)
    check_within(before, after, [by_id[i] for i in decision.admitted], limits, queues)  # (a)


@PROPERTY_SETTINGS
@given(situations())
def test_property_equal_jobs_in_a_queue_are_admitted_in_rank_order(
    situation: tuple[list[Candidate], list[Candidate], Limits, dict[str, QueueConfig]],
) -> None:
    candidates, running, limits, queues = situation
    # make pairs of identical demands on one cluster so rank order is observable
    candidates = [replace(c, cluster="c1", demand=Resources(1, GB, 1)) for c in candidates]
    decision = admit(candidates, Ledger.of(running).usage(), limits, queues)
    admitted = set(decision.admitted)
    for queue in QUEUE_NAMES:
        ranked = sorted(
            (c for c in candidates if c.queue == queue), key=lambda c: (-c.priority, c.job_id)
        )
        flags = [c.job_id in admitted for c in ranked]
        assert flags == sorted(flags, reverse=True), (queue, flags)


Event = tuple[str, object]

events_st = st.lists(
    st.one_of(
        st.tuples(st.just("submit"), st.lists(job_st, min_size=1, max_size=4)),
        st.tuples(st.just("finish"), st.integers(0, 1000)),
        st.tuples(st.just("limits"), st.tuples(limits_st, queues_st)),
    ),
    max_size=30,
)


@PROPERTY_SETTINGS
@given(limits_st, queues_st, events_st)
def test_property_replaying_admit_after_every_event_never_breaks_a_limit(
    limits: Limits, queues: dict[str, QueueConfig], events: list[Event]
) -> None:
    waiting: list[Candidate] = []
    running: list[Candidate] = []
    next_id = 1
    for kind, payload in events:
        if kind == "submit":
            assert isinstance(payload, list)
            new = candidates_from(payload, next_id)
            next_id += len(new)
            waiting += new
        elif kind == "finish":
            assert isinstance(payload, int)
            if running:
                running.pop(payload % len(running))
        else:  # limits and quotas change, possibly below what runs now
            assert isinstance(payload, tuple)
            limits, queues = payload
        before = Ledger.of(running)
        decision = admit(waiting, before.usage(), limits, queues)
        after = check_decision(waiting, running, limits, queues, decision)
        chosen = set(decision.admitted)
        admitted = [c for c in waiting if c.job_id in chosen]
        check_within(before, after, admitted, limits, queues)
        running += admitted
        waiting = [c for c in waiting if c.job_id not in chosen]


# -- warm drivers ---------------------------------------------------------------------------


def warm_usage(holds: Iterable[WarmHold], running: Iterable[Candidate] = ()) -> Usage:
    usage = usage_of(running)
    total, by_cluster = usage.total, dict(usage.by_cluster)
    for hold in holds:
        total += hold.held
        by_cluster[hold.cluster] = by_cluster.get(hold.cluster, Resources()) + hold.held
    return Usage(total, by_cluster, usage.by_queue)


def test_a_job_handed_to_a_warm_driver_takes_over_its_reservation() -> None:
    hold = WarmHold("w1", "local", Resources(1, GB, 1))
    limits = Limits(Limit(max_running_jobs=1, max_memory_mb=GB))
    plain = job(1)
    assert admit([plain], warm_usage([hold]), limits, {}).admitted == []
    credited = replace(plain, credit=hold.held)
    decision = admit([credited], warm_usage([hold]), limits, {})
    assert decision.admitted == [1]
    assert decision.usage.total == Resources(1, GB, 1)  # one reservation, not two


def test_warm_drivers_are_retired_just_enough_for_a_waiting_job() -> None:
    holds = [WarmHold(f"w{i}", "local", Resources(1, GB, 1)) for i in range(3)]
    limits = Limits(Limit(max_memory_mb=4 * GB))
    big = job(1, memory_mb=3 * GB)
    decision = admit([big], warm_usage(holds), limits, {})
    assert decision.short_of_capacity == [1]
    assert len(warm_to_retire([big], decision.usage, limits, holds)) == 2


def test_no_warm_driver_is_retired_for_a_job_that_cannot_fit_anyway() -> None:
    holds = [WarmHold("w1", "local", Resources(1, GB, 1))]
    limits = Limits(Limit(max_memory_mb=4 * GB))
    running = [job(9, memory_mb=3 * GB)]
    too_big = job(1, memory_mb=2 * GB)
    assert warm_to_retire([too_big], warm_usage(holds, running), limits, holds) == []


def test_a_queue_quota_never_retires_warm_drivers() -> None:
    holds = [WarmHold("w1", "local", Resources(1, GB, 1))]
    limits = Limits(Limit(max_running_jobs=1))
    quota = {"q": QueueConfig("q", quota=Limit(max_running_jobs=0))}
    decision = admit([job(1, "q")], warm_usage(holds), limits, quota)
    assert decision.admitted == [] and decision.short_of_capacity == []


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    holds=st.lists(
        st.tuples(st.sampled_from(["a", "b"]), st.integers(1, 4), st.integers(1, 3)), max_size=6
    ),
    waiting=st.lists(
        st.tuples(st.sampled_from(["a", "b"]), st.integers(1, 8), st.integers(1, 4)),
        min_size=1,
        max_size=5,
    ),
    max_memory=st.integers(1, 16),
    max_jobs=st.integers(1, 8),
    cluster_cores=st.integers(1, 8),
)
def test_retiring_warm_drivers_makes_room_without_ever_going_over(
    holds: list[tuple[str, int, int]],
    waiting: list[tuple[str, int, int]],
    max_memory: int,
    max_jobs: int,
    cluster_cores: int,
) -> None:
    """Retired drivers free exactly what lets the first job that needed them fit; a job is
    never given room it could not use; nothing is retired when all fits already."""
    warm = [WarmHold(f"w{i}", c, Resources(1, m * GB, k)) for i, (c, m, k) in enumerate(holds)]
    limits = Limits(
        Limit(max_running_jobs=max_jobs, max_memory_mb=max_memory * GB),
        {"a": Limit(max_cores=cluster_cores)},
    )
    usage = warm_usage(warm)
    candidates = [
        Candidate(100 + i, "default", c, 0, Resources(1, m * GB, k))
        for i, (c, m, k) in enumerate(waiting)
    ]
    decision = admit(candidates, usage, limits, {})
    short = [c for c in candidates if c.job_id in decision.short_of_capacity]
    retired = set(warm_to_retire(short, decision.usage, limits, warm))
    assert retired <= {w.id for w in warm}
    if not short:
        assert not retired
        return
    if retired:
        # Without the retired drivers, at least one waiting job now fits.
        remaining = [w for w in warm if w.id not in retired]
        after = admit(short, warm_usage(remaining, []), limits, {})
        admitted_now = admit(
            short,
            Usage(
                decision.usage.total - (usage.total - warm_usage(remaining).total),
                {
                    name: held
                    - (
                        warm_usage(warm).by_cluster.get(name, Resources())
                        - warm_usage(remaining).by_cluster.get(name, Resources())
                    )
                    for name, held in decision.usage.by_cluster.items()
                },
                decision.usage.by_queue,
            ),
            limits,
            {},
        ).admitted
        assert admitted_now, (after, retired)
