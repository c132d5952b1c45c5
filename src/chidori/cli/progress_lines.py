"""Progress lines on stderr while the CLI waits for a job: one line when something changes
(state, waiting reason, warm/cold, Spark progress), otherwise at most one every
``HEARTBEAT_SECONDS`` (elapsed time), so a pipe or a scheduler's log is not flooded."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from chidori.cli.client import JsonObject
from chidori.cli.output import Output
from chidori.cli.views.progress import (
    change_key,
    progress_details,
    spark_progress_text,
    waiting_text,
)
from chidori.domain.states import JobState

HEARTBEAT_SECONDS = 10.0
QUEUED_POLL_SECONDS = 10.0  # the long poll answers at once on a state change; a new
# waiting reason (another limit) shows within this
REASON_POLL_SECONDS = 1.0
SPARK_POLL_SECONDS = 2.0  # Spark progress moves without a state change: look more often


def ui_url(server_url: str, job_id: int) -> str:
    return f"{server_url.rstrip('/')}/ui/jobs/{job_id}"


class ProgressLines:
    """Decides when a waited-for job deserves a line, and how long the next poll may wait."""

    def __init__(
        self,
        out: Output,
        *,
        heartbeat: float = HEARTBEAT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._out = out
        self._heartbeat = heartbeat
        self._clock = clock
        self._last_key: tuple[Any, ...] | None = None
        self._last_at = 0.0

    def update(self, job: JsonObject) -> None:
        """Print a line if the job changed, or if the last line is a heartbeat old."""
        key = change_key(job)
        now = self._clock()
        overdue = now - self._last_at >= self._heartbeat * 0.95  # polls end just in time
        if key != self._last_key or (overdue and job.get("state") == JobState.RUNNING):
            self._out.progress(job, progress_details(job))
            self._last_key = key
            self._last_at = now

    def poll_seconds(self, job: JsonObject) -> float:
        """How long the next long poll may wait for a state change before we look again."""
        if job.get("state") in (JobState.QUEUED, JobState.ADMITTED) and not waiting_text(job):
            return REASON_POLL_SECONDS  # the next admission step says why it waits
        if job.get("state") != JobState.RUNNING:
            return QUEUED_POLL_SECONDS
        if job.get("kind") == "spark" or spark_progress_text(job.get("progress")) is not None:
            return SPARK_POLL_SECONDS
        return float(max(1, round(self._heartbeat - (self._clock() - self._last_at))))
