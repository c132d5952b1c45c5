"""Which Spark Connect server a user's requests go to: the use case behind the front door.

Each user has at most one Connect server (a job of kind `connect`, marked with
`Channel.CONNECT` by the door, never by a caller): the first request starts one through the
ordinary submission path (policy, limits, queues, admission), later ones find it in the store.
Once its driver has written its endpoint (`<work dir>/<job>/attempt-<n>/control/endpoint`,
read without following links: the folder is the job's), requests are routed to that loopback
port with that server's secret. Until then `Waiting` says why the user waits.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from chidori.config.connect import ConnectConfig
from chidori.domain.errors import BackendError, NotFound
from chidori.domain.records import SUBMITTED_THROUGH, Channel, Job, JobQuery
from chidori.domain.spec import CONNECT_APPLICATION, JobKind, JobSpec
from chidori.domain.states import JobState
from chidori.host.jobfs import JobFolder
from chidori.services.identity import Actor
from chidori.services.jobs import JobService

log = logging.getLogger(__name__)

ACTIVE = (JobState.QUEUED, JobState.ADMITTED, JobState.RUNNING)
RECHECK_SECONDS = 2.0  # how long a known route is used before its job's state is read again
# A server that failed this recently is not replaced by the next call: the client retries for
# minutes, and each retry would start (and fail) another one.
FAILED_BACKOFF_SECONDS = 60.0


@dataclass(frozen=True)
class Waiting:
    """The user's server is not ready: why, and whether it still waits for admission (which
    may last as long as a limit stays reached) rather than starting."""

    reason: str
    queued: bool


@dataclass(frozen=True)
class Route:
    job_id: int
    attempt: int
    port: int
    secret: str
    checked_at: float


EndpointReader = Callable[[int, int], tuple[int, str] | None]


def endpoint_reader(work_dir: Path) -> EndpointReader:
    """Reads (port, secret) from an attempt's control folder on this host, if it is there."""

    def read(job_id: int, attempt: int) -> tuple[int, str] | None:
        folder = JobFolder(work_dir / str(job_id), [f"attempt-{attempt}", "control"])
        data = folder.read("endpoint", limit=4096)
        if data is None:
            return None
        try:
            endpoint = json.loads(data)
            port, secret = int(endpoint["port"]), str(endpoint["token"])
        except (ValueError, KeyError, TypeError):
            return None  # written by the job's own code: trusted for nothing but its own use
        return (port, secret) if 0 < port < 65536 and secret else None

    return read


class ConnectServers:
    def __init__(
        self,
        jobs: JobService,
        config: ConnectConfig,
        read_endpoint: EndpointReader,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._jobs = jobs
        self._config = config
        self._read_endpoint = read_endpoint
        self._clock = clock
        self._routes: dict[str, Route] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def spec(self, user: str) -> JobSpec:
        """The job a user's Connect server runs as."""
        return JobSpec(
            name=f"spark-connect-{user}",
            kind=JobKind.CONNECT,
            application=CONNECT_APPLICATION,
            args=[f"{self._config.idle_timeout_seconds:g}"],
            driver_memory=self._config.driver_memory,
            cluster=self._config.cluster,
            queue=self._config.queue,
            labels={SUBMITTED_THROUGH: Channel.CONNECT.value},
        )

    def route(self, actor: Actor, start: bool = True) -> Route | Waiting:
        """Where this user's requests go now; Waiting while the server is queued or starting.
        `start`: start a server for the user if none is active (otherwise NotFound)."""
        known = self._routes.get(actor.name)
        if known is not None and self._clock() - known.checked_at < RECHECK_SECONDS:
            return known
        with self._lock_of(actor.name):
            return self._find_or_start(actor, known, start)

    def forget(self, actor: Actor, route: Route) -> None:
        """The route failed (the server is gone or unreachable): look again next time."""
        with self._guard:
            if self._routes.get(actor.name) == route:
                del self._routes[actor.name]

    def _lock_of(self, user: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(user, threading.Lock())

    def _find_or_start(self, actor: Actor, known: Route | None, start: bool) -> Route | Waiting:
        job = self._current_job(actor, known)
        if job is None and not start:
            raise NotFound("no Spark Connect server of yours is running")
        if job is None:
            self._refuse_after_a_failure(actor)
            job, _ = self._jobs.submit(actor, self.spec(actor.name), channel=Channel.CONNECT)
        if job.state is JobState.QUEUED:
            why = f": {job.waiting_reason}" if job.waiting_reason else ""
            return Waiting(f"your Spark Connect server (job {job.id}) is queued{why}", queued=True)
        endpoint = self._read_endpoint(job.id, job.attempts)
        if job.state is not JobState.RUNNING or endpoint is None:
            return Waiting(f"your Spark Connect server (job {job.id}) is starting", queued=False)
        port, secret = endpoint
        route = Route(job.id, job.attempts, port, secret, self._clock())
        if known is None or (known.job_id, known.attempt) != (job.id, job.attempts):
            log.info("Connect: %s goes to job %d (attempt %d)", actor.name, job.id, job.attempts)
        with self._guard:
            self._routes[actor.name] = route
        return route

    def _refuse_after_a_failure(self, actor: Actor) -> None:
        """BackendError (not retried by clients) while the user's last server failed lately
        without ever coming up. One that ran and then died (killed, out of memory) is
        replaced at once: starting again may well work."""
        latest = self._jobs.search(
            actor, JobQuery(owner=actor.name, channel=Channel.CONNECT.value, limit=1)
        ).items
        if not latest or latest[0].state is not JobState.FAILED or latest[0].finished_at is None:
            return
        if latest[0].ready_at is not None:
            return
        age = (datetime.now(UTC) - latest[0].finished_at).total_seconds()
        if age < FAILED_BACKOFF_SECONDS:
            job = latest[0]
            raise BackendError(
                f"your Spark Connect server (job {job.id}) failed {age:.0f} s ago: "
                f"{job.reason or 'see its log'}; try again in {FAILED_BACKOFF_SECONDS - age:.0f} s"
            )

    def _current_job(self, actor: Actor, known: Route | None) -> Job | None:
        if known is not None:
            job = self._jobs.get_unchecked(known.job_id)
            if job.state in ACTIVE:
                return job
        page = self._jobs.search(
            actor,
            JobQuery(states=ACTIVE, owner=actor.name, channel=Channel.CONNECT.value, limit=1),
        )
        return page.items[0] if page.items else None
