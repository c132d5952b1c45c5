"""What a progress line of ``--wait``/``--follow`` says about a job: why it waits, how long it
has run, warm or cold, and its Spark progress (``stages 3/5 · tasks 120/200 (2 failed)``).

Rendered defensively: ``progress`` may be absent (an older server), null, or partial.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from chidori.cli.client import JsonObject
from chidori.cli.views.cells import format_duration
from chidori.cli.views.jobs import job_duration
from chidori.domain.states import JobState

SEPARATOR = " · "


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _fraction(noun: str, done: Any, total: Any, failed: Any) -> str | None:
    done_n, total_n, failed_n = _count(done), _count(total), _count(failed)
    if done_n is None or total_n is None:
        return None
    text = f"{noun} {done_n}/{total_n}"
    return text + (f" ({failed_n} failed)" if failed_n else "")


def spark_progress_text(progress: Any) -> str | None:
    """``stages 3/5 · tasks 120/200 (2 failed)`` from the job's ``progress``; None if unknown."""
    if not isinstance(progress, dict):
        return None
    parts = [
        _fraction(
            "stages",
            progress.get("stages_done"),
            progress.get("stages_total"),
            progress.get("stages_failed"),
        ),
        _fraction(
            "tasks",
            progress.get("tasks_done"),
            progress.get("tasks_total"),
            progress.get("tasks_failed"),
        ),
    ]
    shown = [p for p in parts if p]
    return SEPARATOR.join(shown) if shown else None


def start_kind_text(job: JsonObject) -> str | None:
    """``warm start`` or ``cold start (why)``; None before the job starts."""
    kind = job.get("start_type")
    if not isinstance(kind, str) or not kind:
        return None
    note = job.get("start_note")
    return f"{kind} start ({note})" if note else f"{kind} start"


def waiting_text(job: JsonObject) -> str | None:
    reason = job.get("waiting_reason") or job.get("reason")
    return str(reason) if reason else None


def progress_details(job: JsonObject, now: datetime | None = None) -> list[str]:
    """The details after ``job N STATE`` on a progress line."""
    state = job.get("state")
    if state in (JobState.QUEUED, JobState.ADMITTED):
        waiting = waiting_text(job)
        return [waiting] if waiting else []
    if state == JobState.RUNNING:
        details = [f"running {format_duration(job_duration(job, now))}"]
        details += [
            d for d in (start_kind_text(job), spark_progress_text(job.get("progress"))) if d
        ]
        return details
    reason = job.get("reason")
    finished = [f"after {format_duration(job_duration(job))}"] if job.get("started_at") else []
    return finished + ([str(reason)] if reason else [])


def change_key(job: JsonObject) -> tuple[Any, ...]:
    """What makes a new progress line worth printing when it changes (elapsed time does not)."""
    return (
        job.get("state"),
        job.get("attempts"),
        waiting_text(job),
        job.get("start_type"),
        spark_progress_text(job.get("progress")),
    )
