"""What the store hands out: plain frozen records, independent of SQLAlchemy."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from chidori.domain.admission import Resources
from chidori.domain.limits import QueueDoc
from chidori.domain.spec import JobSpec
from chidori.domain.states import AttemptState, JobState


class Channel(StrEnum):
    """A door jobs come in through that the server marks them with (`Job.channel`), because
    it acts on its own jobs only: set by the server, never from anything the caller sends."""

    SPARK_REST = "spark-rest"  # Spark's REST submission listener (chidori.api.spark_rest)
    CONNECT = "connect"  # the Spark Connect front door (chidori.connect)


SUBMITTED_THROUGH = "submitted-through"
"""The label that tells people which door a job came in through (`livy`, `spark-rest`): set
by the door, visible and searchable like any label. Unlike `Channel` it proves nothing (a
caller can set labels): the server acts on the channel, never on this label."""


@dataclass(frozen=True)
class Job:
    id: int
    name: str
    state: JobState
    spec: JobSpec
    owner: str
    team: str | None
    created_at: datetime
    updated_at: datetime
    admitted_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    attempts: int
    reason: str | None
    spark_app_id: str | None
    exit_code: int | None
    cancel_requested: bool
    demand: Resources = field(default_factory=Resources)
    waiting_reason: str | None = None
    start_type: str | None = None  # how the current attempt started: "cold" or "warm"
    start_note: str | None = None  # why it started cold, where a warm pool exists
    ready_at: datetime | None = None  # its Spark application was up (or it was handed over)
    channel: str | None = None  # a Channel, when the job came in through one (server-set)
    # The current attempt's Spark progress counts (docs/progress.md), None when none is known.
    progress: dict[str, Any] | None = None

    @property
    def queue_wait_seconds(self) -> float | None:
        """From submission to the current attempt's admission."""
        if self.admitted_at is None:
            return None
        return max(0.0, (self.admitted_at - self.created_at).total_seconds())

    @property
    def startup_seconds(self) -> float | None:
        """From admission until the application could run (the driver's start-up)."""
        if self.admitted_at is None or self.ready_at is None:
            return None
        return max(0.0, (self.ready_at - self.admitted_at).total_seconds())

    @property
    def run_seconds(self) -> float | None:
        """From the application's start to the job's end."""
        if self.ready_at is None or self.finished_at is None:
            return None
        return max(0.0, (self.finished_at - self.ready_at).total_seconds())

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at is None:
            return None
        end = self.finished_at
        if end is None:
            return None
        return (end - self.started_at).total_seconds()


@dataclass(frozen=True)
class Attempt:
    job_id: int
    number: int
    state: AttemptState
    server_id: str
    host: str
    pid: int | None
    log_path: str | None
    started_at: datetime
    finished_at: datetime | None
    lease_expires_at: datetime
    spark_app_id: str | None
    exit_code: int | None
    reason: str | None
    start_type: str | None = None  # "cold" or "warm"
    start_note: str | None = None  # why the attempt started cold, when a warm pool exists
    ready_at: datetime | None = None  # the Spark application was up (or the job handed over)
    executors: list[dict[str, Any]] | None = None  # Kubernetes: its executor pods as last seen
    progress: dict[str, Any] | None = None  # Spark progress counts (docs/progress.md)
    remote_run_id: str | None = None  # remote clusters: the service's run id
    remote_url: str | None = None  # remote clusters: the run's page at the service


@dataclass(frozen=True)
class Event:
    id: int
    job_id: int
    attempt: int | None
    time: datetime
    type: str
    state: str | None
    actor: str
    reason: str | None
    source: str | None


@dataclass(frozen=True)
class Share:
    id: int
    kind: str  # "job" or "dataset"
    job_id: int | None
    schema_name: str | None
    table_name: str | None
    created_by: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True)
class Server:
    id: str
    host: str
    pid: int
    version: str
    started_at: datetime
    heartbeat_at: datetime
    stopped_at: datetime | None


@dataclass(frozen=True)
class Claim:
    """A job the scheduler has just admitted, with the number of its new attempt."""

    job: Job
    attempt: int
    warm_driver: str | None = None  # the idle warm driver the job is handed to, if any


@dataclass(frozen=True)
class JobQuery:
    states: tuple[JobState, ...] = ()
    schema_name: str | None = None
    table_name: str | None = None
    queue: str | None = None
    cluster: str | None = None
    owner: str | None = None
    channel: str | None = None  # only jobs the server marked with this Channel
    labels: tuple[tuple[str, str], ...] = ()
    created_after: datetime | None = None
    created_before: datetime | None = None
    text: str | None = None
    visible_to: tuple[str, str | None] | None = None  # (user, team): only what they may see
    limit: int = 50
    before_id: int | None = None  # the cursor: continue after this id, in the chosen order
    oldest_first: bool = False  # order by id ascending (default: newest first)


@dataclass(frozen=True)
class Page:
    items: list[Job] = field(default_factory=list)
    next_before_id: int | None = None


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended, as the driver host saw it."""

    state: AttemptState
    reason: str | None
    exit_code: int | None = None
    # The service refused the run for quota (remote clusters): the job waits again, with
    # backoff, and the attempt counts neither as failed nor as lost.
    deferred: bool = False


@dataclass(frozen=True)
class Ending:
    """An attempt's end to record (by itself, or with the admit step after it in one
    transaction)."""

    job_id: int
    attempt: int
    outcome: Outcome
    actor: str
    lost_retry_limit: int = 3


@dataclass(frozen=True)
class QueueStats:
    """A job queue as admins see it: its settings, how many jobs wait, what its jobs hold."""

    name: str
    config: QueueDoc
    depth: int
    running: Resources
    oldest_queued_at: datetime | None


# A Livy statement's states (Livy's, with "error" for statements whose driver was lost).
WAITING, RUNNING, AVAILABLE, ERROR = "waiting", "running", "available", "error"
CANCELLING, CANCELLED = "cancelling", "cancelled"
ACTIVE_STATEMENT_STATES = (WAITING, RUNNING, CANCELLING)


@dataclass(frozen=True)
class Statement:
    """A statement run in a Livy interactive session (numbered from 0 within it)."""

    job_id: int
    number: int
    code: str
    kind: str
    state: str
    attempt: int | None
    output: dict[str, Any] | None
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    submitted_by: str | None = None  # who ran it (None for statements stored before 0010)
