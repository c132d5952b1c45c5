"""The remote backend interface: services that run the driver themselves (Livy, Databricks,
Dataproc). Chidori submits a run and tracks it instead of hosting a driver.

Stateless, like the hosted backends: a run is found again by its run id (stored on the
attempt before anything relies on it) or, when a submission's answer was lost, by the
attempt's idempotency key, which every submission carries. Each implementation maps every
state of its service explicitly and raises on an unknown one.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import StrEnum

from chidori.config import ClusterConfig
from chidori.domain.errors import Unavailable
from chidori.domain.records import Job
from chidori.domain.spec import JobSpec


class RemoteUnavailable(Unavailable):
    """The service cannot be reached or answered "try later" (5xx, a timeout): the step
    that called it tries again later, with the same idempotency key."""

    code = "remote_unavailable"


class QuotaRefused(Unavailable):
    """The service refused the run for quota (HTTP 429, RESOURCE_EXHAUSTED, QUOTA_EXCEEDED):
    the job waits again with backoff instead of failing."""

    code = "quota_refused"


class RemoteState(StrEnum):
    """What Chidori makes of a service's run state."""

    PENDING = "PENDING"  # accepted, not running yet (queued, cluster starting)
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self in (RemoteState.SUCCEEDED, RemoteState.FAILED, RemoteState.CANCELLED)


@dataclass(frozen=True)
class RemoteRun:
    """A submitted run: the service's id for it and, where the service has one, its page."""

    run_id: str
    url: str | None = None


@dataclass(frozen=True)
class RemoteStatus:
    state: RemoteState
    service_state: str  # the service's own word for it, for the reason and the docs
    message: str | None = None  # why it failed, as the service says
    app_id: str | None = None  # the Spark application id, when the service tells it
    url: str | None = None  # a better page than the submission's, once known (Spark UI)


@dataclass(frozen=True)
class LogPage:
    """Log lines `start`.. of a run, and where the next page starts."""

    lines: list[str]
    next_start: int
    total: int | None = None


@dataclass(frozen=True)
class RemoteSubmission:
    job: Job
    attempt: int
    key: str  # the attempt's idempotency key: a second submission finds the first run
    conf: dict[str, str] = field(default_factory=dict)  # set by Chidori beside the spec's
    # An earlier submission of this attempt may have reached the service (adopted from a
    # lost replica, or its answer was lost): services without keys of their own look first.
    maybe_submitted: bool = False


def idempotency_key(job: Job, attempt: int) -> str:
    """The key of one attempt: the same on every replica (derived from the job and the attempt
    number), different for every job of every Chidori (the job's creation time is in it)."""
    seed = f"{job.id}/{attempt}/{job.created_at.isoformat()}"
    return f"chidori-{job.id}-{attempt}-{hashlib.sha256(seed.encode()).hexdigest()[:12]}"


class RemoteBackend(ABC):
    """A Spark master that runs the driver itself."""

    def __init__(self, cluster: ClusterConfig) -> None:
        self.cluster = cluster

    def check_spec(self, spec: JobSpec) -> None:  # noqa: B027
        """Refuse, at submission, what this service cannot run (InvalidRequest naming the
        field)."""

    @abstractmethod
    def submit(self, submission: RemoteSubmission) -> RemoteRun:
        """Submit the attempt's run, or find the one already submitted with its key. Raises
        QuotaRefused, RemoteUnavailable (try again later, same key), InvalidRequest (the
        spec cannot run there), BackendError (the service refused it)."""

    @abstractmethod
    def status(self, run_id: str) -> RemoteStatus:
        """The run's state now. Raises RemoteUnavailable, NotFound (the service does not know
        the run), BackendError (a state this backend does not know: never guessed)."""

    @abstractmethod
    def logs(self, run_id: str, start: int, final: bool) -> LogPage:
        """Driver log lines from line `start`. While the run is going (`final` false) an
        unfinished last line is held back. Raises RemoteUnavailable."""

    @abstractmethod
    def cancel(self, run_id: str) -> None:
        """Ask the service to stop the run; done when it is already over. Raises
        RemoteUnavailable, BackendError."""

    def cleanup(self, run_id: str) -> None:  # noqa: B027
        """Remove what the run left at the service (idempotent). Most leave nothing."""
