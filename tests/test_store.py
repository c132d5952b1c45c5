"""The store's contract, run on SQLite and on PostgreSQL."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from chidori.domain.errors import Conflict, NotFound
from chidori.domain.limits import LimitsDoc
from chidori.domain.records import Claim, Ending, JobQuery, Outcome
from chidori.domain.spec import JobSpec
from chidori.domain.states import ACTIVE_JOB_STATES, AttemptState, JobState
from chidori.store import Database, Repositories
from chidori.store.admission import AdmissionStore
from chidori.store.models import JobRow


def spec(**fields: object) -> JobSpec:
    fields.setdefault("application", "app.py")
    return JobSpec.model_validate(fields)


_ACTIVE = [s.value for s in ACTIVE_JOB_STATES]


@pytest.fixture
def store(store: Database) -> Repositories:
    """The repositories over the database the shared `store` fixture opened."""
    return Repositories.of(store)


def claim(
    store: Repositories, server: str = "s1", max_running: int | None = None, lease: float = 15
) -> Claim:
    """One job admitted through the scheduler's own admit step (a running-jobs limit of one
    more than what runs now, so the step admits at most one)."""
    claims = admit_one(store, server, max_running, lease)
    assert len(claims) == 1, claims
    return claims[0]


def claim_none(store: Repositories, max_running: int | None = None) -> None:
    assert admit_one(store, "s1", max_running, 15) == []


def admit_one(
    store: Repositories, server: str, max_running: int | None, lease: float
) -> list[Claim]:
    with store.db.reading() as session:
        active = session.scalar(
            select(func.count()).select_from(JobRow).where(JobRow.state.in_(_ACTIVE))
        )
    limit = (active or 0) + 1 if max_running is None else min(max_running, (active or 0) + 1)
    admission = AdmissionStore(store.db, LimitsDoc(max_running_jobs=limit))
    return admission.admit(server, "host", ["local"], lease).claims


def test_created_job_is_queued_with_a_submitted_event(store: Repositories) -> None:
    job, created = store.jobs.create_job(
        spec(name="n", labels={"team": "a"}), "alice", source="10.0.0.1"
    )
    assert created
    assert job.state is JobState.QUEUED and job.owner == "alice" and job.attempts == 0
    again = store.jobs.get_job(job.id)
    assert again.spec.labels == {"team": "a"} and again.created_at.tzinfo is not None
    [event] = store.jobs.list_events(job.id)
    assert (event.state, event.actor, event.reason, event.source) == (
        "QUEUED",
        "alice",
        "submitted",
        "10.0.0.1",
    )


def test_unknown_job_is_not_found(store: Repositories) -> None:
    with pytest.raises(NotFound):
        store.jobs.get_job(999)
    with pytest.raises(NotFound):
        store.jobs.list_events(999)


def test_idempotency_key_returns_first_job_and_refuses_other_spec(store: Repositories) -> None:
    first, created = store.jobs.create_job(spec(), "a", idempotency_key="k1")
    second, created_again = store.jobs.create_job(spec(), "a", idempotency_key="k1")
    assert created and not created_again and second.id == first.id
    with pytest.raises(Conflict):
        store.jobs.create_job(spec(application="other.py"), "a", idempotency_key="k1")
    assert len(store.jobs.list_jobs(JobQuery()).items) == 1


def test_list_filters_and_cursor(store: Repositories) -> None:
    ids = []
    for i in range(7):
        job, _ = store.jobs.create_job(
            spec(name=f"job-{i}", schema=f"s{i % 2}", table="t", labels={"n": str(i)}),
            "alice" if i < 5 else "bob",
        )
        ids.append(job.id)
    page = store.jobs.list_jobs(JobQuery(limit=3))
    assert [j.id for j in page.items] == ids[::-1][:3]
    rest = store.jobs.list_jobs(JobQuery(limit=10, before_id=page.next_before_id))
    assert [j.id for j in rest.items] == ids[::-1][3:] and rest.next_before_id is None
    assert {j.id for j in store.jobs.list_jobs(JobQuery(schema_name="s0")).items} == set(ids[0::2])
    assert [j.id for j in store.jobs.list_jobs(JobQuery(labels=(("n", "3"),))).items] == [ids[3]]
    assert {j.id for j in store.jobs.list_jobs(JobQuery(owner="bob")).items} == set(ids[5:])
    assert [j.id for j in store.jobs.list_jobs(JobQuery(text="JOB-4")).items] == [ids[4]]
    now = datetime.now(UTC)
    assert len(store.jobs.list_jobs(JobQuery(created_after=now - timedelta(minutes=1))).items) == 7
    assert store.jobs.list_jobs(JobQuery(created_before=now - timedelta(minutes=1))).items == []
    store.jobs.request_cancel(ids[0], "alice")
    cancelled = store.jobs.list_jobs(JobQuery(states=(JobState.CANCELLED,))).items
    assert [j.id for j in cancelled] == [ids[0]]


def test_claim_takes_highest_priority_then_oldest(store: Repositories) -> None:
    low, _ = store.jobs.create_job(spec(priority=0), "a")
    high, _ = store.jobs.create_job(spec(priority=5), "a")
    low2, _ = store.jobs.create_job(spec(priority=0), "a")
    order = [claim(store).job.id for _ in range(3)]
    assert order == [high.id, low.id, low2.id]
    claim_none(store)


def test_claim_respects_the_running_limit(store: Repositories) -> None:
    for _ in range(3):
        store.jobs.create_job(spec(), "a")
    claim(store, max_running=2)
    claim(store, max_running=2)
    claim_none(store, max_running=2)


def test_full_lifecycle_records_every_transition(store: Repositories) -> None:
    job, _ = store.jobs.create_job(spec(), "a")
    claimed = claim(store)
    assert claimed.job.state is JobState.ADMITTED and claimed.attempt == 1
    assert store.attempts.mark_running(job.id, 1, 4242, "/logs/1", "s1")
    store.attempts.set_app_id(job.id, 1, "local-1", "s1")
    done = store.attempts.finish_attempt(job.id, 1, Outcome(AttemptState.SUCCEEDED, None, 0), "s1")
    assert done is not None and done.state is JobState.SUCCEEDED
    assert done.spark_app_id == "local-1" and done.finished_at is not None
    states = [e.state for e in store.jobs.list_events(job.id) if e.type == "state"]
    assert states == ["QUEUED", "ADMITTED", "RUNNING", "SUCCEEDED"]
    [attempt] = store.jobs.list_attempts(job.id)
    assert attempt.state is AttemptState.SUCCEEDED and attempt.pid == 4242


def test_a_finished_attempt_cannot_be_finished_again(store: Repositories) -> None:
    job, _ = store.jobs.create_job(spec(), "a")
    claim(store)
    store.attempts.finish_attempt(job.id, 1, Outcome(AttemptState.FAILED, "boom", 1), "s1")
    assert (
        store.attempts.finish_attempt(job.id, 1, Outcome(AttemptState.SUCCEEDED, None, 0), "s1")
        is None
    )
    assert store.jobs.get_job(job.id).state is JobState.FAILED


def test_failed_job_is_retried_with_backoff_while_retries_remain(store: Repositories) -> None:
    job, _ = store.jobs.create_job(spec(max_retries=1), "a")
    claim(store)
    retried = store.attempts.finish_attempt(
        job.id, 1, Outcome(AttemptState.FAILED, "boom", 1), "s1"
    )
    assert retried is not None and retried.state is JobState.QUEUED
    assert "retry 1 of 1" in (retried.reason or "")
    claim_none(store)  # backing off
    assert store.attempts.mark_running(job.id, 1, 1, "x", "s1") is False  # an old attempt is fenced


def test_lost_attempt_requeues_until_the_limit(store: Repositories) -> None:
    job, _ = store.jobs.create_job(spec(), "a")
    for number in (1, 2):
        assert claim(store).attempt == number
        lost = store.attempts.finish_attempt(
            job.id, number, Outcome(AttemptState.LOST, "host died"), "s2", 1
        )
        assert lost is not None
    assert lost is not None
    assert lost.state is JobState.FAILED and "lost 2 times" in (lost.reason or "")


def test_a_job_that_must_not_run_twice_fails_when_its_host_is_lost(store: Repositories) -> None:
    """rerun_lost: false: the lost driver may have finished unrecorded, so no second run."""
    job, _ = store.jobs.create_job(spec(rerun_lost=False), "a")
    claim(store)
    ended = store.attempts.finish_attempt(job.id, 1, Outcome(AttemptState.LOST, "host died"), "s2")
    assert ended is not None and ended.state is JobState.FAILED
    assert "rerun_lost is false" in (ended.reason or "") and "host died" in (ended.reason or "")
    claim_none(store)


def test_cancel_queued_is_immediate_and_running_is_flagged(store: Repositories) -> None:
    queued, _ = store.jobs.create_job(spec(), "a")
    running, _ = store.jobs.create_job(spec(priority=9), "a")
    claim(store)
    store.attempts.mark_running(running.id, 1, 1, "x", "s1")
    assert store.jobs.request_cancel(queued.id, "bob").state is JobState.CANCELLED
    flagged = store.jobs.request_cancel(running.id, "bob")
    assert flagged.state is JobState.RUNNING and flagged.cancel_requested
    [attempt] = store.attempts.cancel_requested_attempts("s1")
    assert (attempt.job_id, attempt.number) == (running.id, 1)
    assert store.attempts.cancel_requested_attempts("other-server") == []
    done = store.attempts.finish_attempt(
        running.id, 1, Outcome(AttemptState.CANCELLED, "stopped"), "s1"
    )
    assert done is not None and done.state is JobState.CANCELLED
    # Cancelling a finished job changes nothing.
    assert store.jobs.request_cancel(running.id, "bob").state is JobState.CANCELLED


def test_leases_expire_unless_renewed(store: Repositories) -> None:
    job, _ = store.jobs.create_job(spec(), "a")
    claim(store, lease=-1)
    [expired] = store.attempts.expired_attempts()
    assert expired.job_id == job.id
    assert store.servers.heartbeat("s1", 30) == {(job.id, 1)}
    assert store.attempts.expired_attempts() == []
    assert [a.job_id for a in store.attempts.active_attempts("s1")] == [job.id]
    assert store.attempts.active_attempts("s2") == []


def test_migrate_twice_is_harmless(store: Repositories) -> None:
    store.db.migrate()
    store.db.ping()


def test_one_idempotency_key_submitted_many_times_at_once_makes_one_job(
    store: Repositories,
) -> None:
    """Submissions arriving together are committed in one batch: repeats of a key inside the
    batch must be answered from the first, not inserted (or refused) twice."""
    from concurrent.futures import ThreadPoolExecutor

    def submit(_n: int) -> tuple[int, bool]:
        job, created = store.jobs.create_job(spec(), "a", idempotency_key="burst")
        return job.id, created

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(submit, range(16)))
    assert len({job_id for job_id, _ in results}) == 1
    assert sum(1 for _, created in results if created) == 1
    with pytest.raises(Conflict):
        store.jobs.create_job(spec(application="other.py"), "a", idempotency_key="burst")


def test_an_end_and_the_admit_step_after_it_share_one_transaction(store: Repositories) -> None:
    """A driver's exit records its end inside the admit step: the freed slot is used by the
    same transaction, and an end recorded before (fenced) is not recorded again."""
    admission = AdmissionStore(store.db, LimitsDoc.model_validate({"max_running_jobs": 1}))
    first, _ = store.jobs.create_job(spec(), "a")
    second, _ = store.jobs.create_job(spec(), "a")
    [running] = admission.admit("s1", "host", ["local"], 15).claims
    assert running.job.id == first.id
    assert admission.admit("s1", "host", ["local"], 15).claims == []  # the one slot is taken
    done = Outcome(AttemptState.SUCCEEDED, None, 0)
    [next_claim] = admission.admit(
        "s1", "host", ["local"], 15, ending=Ending(first.id, 1, done, "s1")
    ).claims
    assert next_claim.job.id == second.id
    assert store.jobs.get_job(first.id).state is JobState.SUCCEEDED
    states = [e.state for e in store.jobs.list_events(first.id) if e.type == "state"]
    assert states == ["QUEUED", "ADMITTED", "SUCCEEDED"]
    # The same end again (a retry after a failure that had committed): nothing changes.
    again = admission.admit("s1", "host", ["local"], 15, ending=Ending(first.id, 1, done, "s1"))
    assert again.claims == []
    assert [e.state for e in store.jobs.list_events(first.id) if e.type == "state"] == states


def test_submissions_committed_together_each_get_their_own_job(store: Repositories) -> None:
    """Group commit: many submissions in one batch, each answered with the job made from its
    own spec (ids matched to rows in order, on both databases)."""
    names = [f"job-{i}" for i in range(60)]
    with ThreadPoolExecutor(30) as pool:
        answers = list(pool.map(lambda name: store.jobs.create_job(spec(name=name), "a")[0], names))
    assert [job.name for job in answers] == names
    assert len({job.id for job in answers}) == len(names)
    for job in answers:
        assert store.jobs.get_job(job.id).name == job.name
