"""A job's lifecycle rules: what a job needs to start, and where it goes when an attempt ends.

Pure functions: the store applies them inside its transactions, tests call them directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from chidori.domain.admission import Resources, job_demand
from chidori.domain.policy import executor_extra_mib
from chidori.domain.records import Outcome
from chidori.domain.spec import JobSpec
from chidori.domain.states import AttemptState, JobState
from chidori.domain.units import parse_memory_mib


def spec_demand(spec: JobSpec, hosted_driver: bool = True) -> Resources:
    """The whole gang a job needs: its driver and all its executors, each executor with what
    Spark asks for beyond its heap (its memory overhead, off-heap and PySpark memory).
    Without a `hosted_driver` (a remote cluster's service runs it) the driver holds no
    memory here; its cores still count, against the cluster's limits."""
    return job_demand(
        parse_memory_mib(spec.driver_memory) if hosted_driver else 0,
        spec.driver_cores,
        spec.executor_instances,
        parse_memory_mib(spec.executor_memory) + executor_extra_mib(spec),
        spec.executor_cores,
    )


def deferred_backoff(refusals: int) -> timedelta:
    """Wait after a service refused a run for quota: 5 s, 10 s, 20 s ... capped at 5 minutes."""
    return timedelta(seconds=min(5 * 2 ** max(0, refusals - 1), 300))


def retry_backoff(failed_attempts: int) -> timedelta:
    """Wait before re-running a failed job: 2 s, 4 s, 8 s ... capped at 5 minutes."""
    return timedelta(seconds=min(2**failed_attempts, 300))


@dataclass(frozen=True)
class NextState:
    state: JobState
    reason: str | None
    failed: int  # the job's failed and lost attempts so far, this one counted
    lost: int


def next_state(
    outcome: Outcome,
    cancel_requested: bool,
    failed: int,
    lost: int,
    max_retries: int,
    lost_retry_limit: int,
    rerun_lost: bool = True,
) -> NextState:
    """Where a job goes when its current attempt ends: done, or back to the queue.

    A LOST attempt (its host died) is retried without spending `max_retries`, up to
    `lost_retry_limit` losses, unless the job said it must not run twice (`rerun_lost`)."""
    if outcome.state is AttemptState.SUCCEEDED:
        return NextState(JobState.SUCCEEDED, None, failed, lost)
    if outcome.state is AttemptState.CANCELLED or cancel_requested:
        return NextState(JobState.CANCELLED, outcome.reason or "cancelled", failed, lost)
    if outcome.deferred:
        # The service refused it for quota: it waits again (with backoff), not a failure.
        return NextState(JobState.QUEUED, f"waiting: {outcome.reason}", failed, lost)
    if outcome.state is AttemptState.LOST:
        lost += 1
        if not rerun_lost:
            # The driver may have run to its end unrecorded: at most once, as the job asked.
            reason = f"driver host lost, not run again (rerun_lost is false): {outcome.reason}"
            return NextState(JobState.FAILED, reason, failed, lost)
        if lost <= lost_retry_limit:
            return NextState(JobState.QUEUED, f"retrying: {outcome.reason}", failed, lost)
        reason = f"driver host lost {lost} times: {outcome.reason}"
        return NextState(JobState.FAILED, reason, failed, lost)
    failed += 1
    if failed <= max_retries:
        reason = f"retry {failed} of {max_retries} after: {outcome.reason}"
        return NextState(JobState.QUEUED, reason, failed, lost)
    return NextState(JobState.FAILED, outcome.reason, failed, lost)
