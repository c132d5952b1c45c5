"""What the live parts of the UI show: a running job's elapsed time, its progress (when the
server records Spark progress), per-attempt durations and log links, and the sections of the
job page that its script patches while the job runs (rendered by the same partials as the
page, so a patched page equals a reloaded one)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment

from chidori.domain.records import Attempt, Job

LIVE_SECTIONS = {
    "live-badge": "_job_badge.html",
    "live-actions": "_job_actions.html",
    "live-summary": "_job_summary.html",
    "live-progress": "_job_progress.html",
    "live-attempts": "_job_attempts.html",
    "live-timeline": "_job_timeline.html",
}
"""Element id on the job page -> the partial that renders its content."""


def elapsed_seconds(started_at: datetime | None, now: datetime | None = None) -> float | None:
    """How long a started job has run so far (None: not started)."""
    if started_at is None:
        return None
    now = now or datetime.now(UTC)
    return max(0.0, (now - started_at).total_seconds())


def progress_of(item: Job | Attempt) -> dict[str, Any] | None:
    """The Spark progress summary, when the server records one (None otherwise: not a Spark
    job, not started yet, or a server without progress recording)."""
    progress = getattr(item, "progress", None)
    return progress if isinstance(progress, dict) else None


def iso_time(value: object) -> str:
    """An ISO 8601 time (as the progress record keeps it) the way the pages show times."""
    if not isinstance(value, str):
        return ""
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value[:40]
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def percent(done: object, total: object) -> int | None:
    """Whole percent of done over total (None when the total is unknown)."""
    if not isinstance(done, int) or not isinstance(total, int) or total <= 0:
        return None
    return max(0, min(100, round(100 * done / total)))


@dataclass(frozen=True)
class AttemptTab:
    """One attempt as its log tab shows it."""

    number: int
    state: str
    seconds: float | None
    running: bool
    log_base: str


def attempt_tabs(job_id: int, attempts: list[Attempt]) -> list[AttemptTab]:
    tabs = []
    for attempt in attempts:
        end = attempt.finished_at
        seconds = (end - attempt.started_at).total_seconds() if end else None
        tabs.append(
            AttemptTab(
                attempt.number,
                attempt.state.value,
                seconds if seconds is not None else elapsed_seconds(attempt.started_at),
                end is None,
                f"/api/v1/jobs/{job_id}/attempts/{attempt.number}/logs",
            )
        )
    return tabs


def render_sections(env: Environment, context: dict[str, Any]) -> dict[str, str]:
    """Every live section of the job page, as the page itself renders it."""
    return {
        element: env.get_template(name).render(context) for element, name in LIVE_SECTIONS.items()
    }
