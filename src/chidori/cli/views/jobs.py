"""Jobs as the CLI shows them: the ``jobs list`` table, one job's detail (``jobs show``) with
its events, and the colour of each state."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from rich.table import Table
from rich.text import Text

from chidori.cli.client import JsonObject
from chidori.cli.views.cells import (
    format_duration,
    format_time,
    parse_time,
    plural,
    seconds_text,
    text,
)
from chidori.domain.states import AttemptState, JobState

STATE_STYLES: dict[str, str] = {
    JobState.QUEUED: "yellow",
    JobState.ADMITTED: "cyan",
    JobState.RUNNING: "bold blue",
    JobState.SUCCEEDED: "bold green",
    JobState.FAILED: "bold red",
    JobState.CANCELLED: "magenta",
    AttemptState.LOST: "red",
}

LIST_COLUMNS = (
    "ID", "NAME", "STATE", "KIND", "CLUSTER", "QUEUE", "TABLE", "CREATED", "DURATION", "ATTEMPTS",
)  # fmt: skip
EVENT_COLUMNS = ("TIME", "TYPE", "STATE", "ATTEMPT", "ACTOR", "REASON")
REASON_MIN_WIDTH = 16
NAME_WIDTH = 32  # `jobs list` cuts longer names (whole with --wide or --json)
REASON_WIDTH = 60  # and longer reasons, when not at a terminal


def state_text(state: str) -> Text:
    return Text(state, style=STATE_STYLES.get(state, ""))


# -- the jobs table ------------------------------------------------------------------------


def job_table(
    rows: Sequence[Sequence[str]], reasons: Sequence[str] | None = None, width: int = 0
) -> Table:
    """The jobs table for a terminal; with ``reasons``, a last REASON column ``width`` wide
    (``0``: as wide as the reasons)."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in LIST_COLUMNS:
        table.add_column(column, justify="right" if column in ("ID", "ATTEMPTS") else "left")
    if reasons is not None:
        table.add_column(
            "REASON", no_wrap=True, overflow="ellipsis", max_width=width if width else None
        )
    for i, row in enumerate(rows):
        cells = [Text(cell) for cell in row]  # Text: no markup in names or reasons
        cells[2] = state_text(row[2])
        if reasons is not None:
            cells.append(Text(reasons[i]))
        table.add_row(*cells)
    return table


def shorten(value: str, width: int) -> str:
    return value if len(value) <= width else value[: width - 1] + "…"


def list_reason(job: JsonObject) -> str:
    """Why a queued job waits, or why a job ended as it did; ``""`` for the others."""
    state = job.get("state")
    if state in (JobState.QUEUED, JobState.ADMITTED):
        reason = job.get("waiting_reason") or job.get("reason")
    elif state in (JobState.FAILED, JobState.CANCELLED):
        reason = job.get("reason")
    else:
        reason = None
    return str(reason) if reason else ""


def list_row(job: JsonObject, *, wide: bool = False) -> list[str]:
    name = text(job.get("name"))
    return [
        text(job.get("id")),
        name if wide else shorten(name, NAME_WIDTH),
        text(job.get("state")),
        text(job.get("kind")),
        text(job.get("cluster")),
        text(job.get("queue")),
        dataset(job),
        format_time(job.get("created_at")),
        format_duration(job_duration(job)),
        text(job.get("attempts")),
    ]


def job_duration(job: JsonObject, now: datetime | None = None) -> float | None:
    """``duration_seconds``, or the time running so far for a job not yet finished."""
    value = job.get("duration_seconds")
    if isinstance(value, int | float):
        return float(value)
    started = parse_time(job.get("started_at"))
    if started is None or job.get("finished_at"):
        return None
    return max(0.0, ((now or datetime.now(UTC)) - started).total_seconds())


def dataset(job: JsonObject) -> str:
    schema, table = job.get("schema"), job.get("table")
    if schema and table:
        return f"{schema}.{table}"
    return text(schema or table)


# -- one job -------------------------------------------------------------------------------


def detail_pairs(job: JsonObject) -> list[tuple[str, str]]:
    raw_spec = job.get("spec")
    spec: JsonObject = raw_spec if isinstance(raw_spec, dict) else {}
    labels = job.get("labels") or {}
    label_text = (
        ", ".join(f"{k}={v}" for k, v in labels.items())
        if isinstance(labels, dict)
        else text(labels)
    )
    args = spec.get("args")
    waiting = job.get("waiting_reason")
    return [
        ("id", text(job.get("id"))),
        ("name", text(job.get("name"))),
        ("state", text(job.get("state"))),
        *([("waiting", str(waiting))] if waiting else []),
        ("reason", text(job.get("reason"))),
        ("kind", text(job.get("kind"))),
        ("user", text(job.get("user"))),
        ("cluster", text(job.get("cluster"))),
        ("queue", text(job.get("queue"))),
        ("priority", text(job.get("priority"))),
        ("demand", demand_text(job.get("demand"))),
        ("table", dataset(job)),
        ("labels", text(label_text)),
        ("application", text(spec.get("application"))),
        ("main class", text(spec.get("main_class"))),
        ("args", " ".join(str(a) for a in args) if isinstance(args, list) and args else "-"),
        ("created", format_time(job.get("created_at"))),
        ("started", format_time(job.get("started_at"))),
        ("finished", format_time(job.get("finished_at"))),
        ("duration", format_duration(job_duration(job))),
        *start_pairs(job),
        ("attempts", text(job.get("attempts"))),
        ("spark app id", text(job.get("spark_app_id"))),
        ("exit code", text(job.get("exit_code"))),
    ]


def demand_text(demand: Any) -> str:
    """A job's whole gang, driver plus executors: ``3g, 5 cores``."""
    if not isinstance(demand, dict) or not demand:
        return "-"
    parts = []
    if demand.get("memory") is not None:
        parts.append(str(demand["memory"]))
    if demand.get("cores") is not None:
        parts.append(plural(demand["cores"], "core"))
    return ", ".join(parts) if parts else "-"


def start_text(job: JsonObject) -> str:
    """``warm``, ``cold (why)`` or ``-`` (not started, or an older server)."""
    kind, note = job.get("start_type"), job.get("start_note")
    if not kind:
        return "-"
    return f"{kind} ({note})" if note else str(kind)


def start_pairs(job: JsonObject) -> list[tuple[str, str]]:
    """How the job started and where its time went: queue, driver start-up, the run."""
    return [
        ("start", start_text(job)),
        ("queue wait", seconds_text(job.get("queue_wait_seconds"))),
        ("start-up", seconds_text(job.get("startup_seconds"))),
        ("run time", seconds_text(job.get("run_seconds"))),
    ]


def event_row(event: JsonObject) -> list[str]:
    return [
        format_time(event.get("time")),
        text(event.get("type")),
        text(event.get("state")),
        text(event.get("attempt")),
        text(event.get("actor")),
        text(event.get("reason")),
    ]
