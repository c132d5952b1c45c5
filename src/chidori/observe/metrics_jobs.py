"""Per-attempt timings for the metrics: the scheduler tells when an attempt was admitted,
started, ready and ended; the histograms are observed from that (queue wait, driver start-up
warm or cold, run duration by end state). Kept in memory per running attempt, dropped at its
end."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from chidori.observe.metrics import Metrics

# A claim whose end is never reported (a start that was abandoned) must not pile up.
_MAX_TRACKED = 10_000


@dataclass
class _Tracked:
    cluster: str
    claimed_at: float  # monotonic
    start: str | None = None  # "warm" or "cold", once the driver runs
    started_at: float | None = None
    ready: bool = False


class AttemptTimings:
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._tracked: dict[tuple[int, int], _Tracked] = {}
        self._lock = threading.Lock()

    def admitted(
        self, job_id: int, attempt: int, queue: str, cluster: str, created_at: datetime
    ) -> None:
        if created_at.tzinfo is None:  # SQLite hands back naive UTC
            created_at = created_at.replace(tzinfo=UTC)
        waited = max(0.0, (datetime.now(UTC) - created_at).total_seconds())
        self._metrics.queue_wait.labels(queue, cluster).observe(waited)
        with self._lock:
            if len(self._tracked) >= _MAX_TRACKED:
                self._tracked.pop(next(iter(self._tracked)))
            self._tracked[(job_id, attempt)] = _Tracked(cluster, time.monotonic())

    def started(self, job_id: int, attempt: int, start: str, ready: bool) -> None:
        """The driver runs (`start`: warm or cold); `ready` when the job can run at once."""
        with self._lock:
            tracked = self._tracked.get((job_id, attempt))
            if tracked is None:
                return
            tracked.start, tracked.started_at = start, time.monotonic()
        if ready:
            self.ready(job_id, attempt)

    def ready(self, job_id: int, attempt: int) -> None:
        """The job can run (its Spark application is up): the start-up is over."""
        with self._lock:
            tracked = self._tracked.get((job_id, attempt))
            if tracked is None or tracked.ready or tracked.start is None:
                return
            tracked.ready = True
        self._metrics.driver_startup.labels(tracked.cluster, tracked.start).observe(
            time.monotonic() - tracked.claimed_at
        )

    def ended(self, job_id: int, attempt: int, state: str) -> None:
        with self._lock:
            tracked = self._tracked.pop((job_id, attempt), None)
        if tracked is None or tracked.started_at is None:
            return  # never ran here: no duration
        self._metrics.job_duration.labels(tracked.cluster, state).observe(
            time.monotonic() - tracked.started_at
        )
