"""``chidori history SCHEMA.TABLE``: a dataset's runs (state, start, duration, attempts,
reason), newest first, with the p50 and p95 durations of its successful runs."""

from __future__ import annotations

import argparse
import math

from chidori.cli.args import ArgumentParser, add_connection_flags, connect, positive_int
from chidori.cli.client import JsonObject
from chidori.cli.errors import UsageError
from chidori.cli.exit_codes import ExitCode
from chidori.cli.output import Output
from chidori.cli.views.cells import format_duration, format_time, text
from chidori.domain.states import JobState

COLUMNS = ("ID", "STATE", "STARTED", "DURATION", "ATTEMPTS", "REASON")


def add_parser(subparsers: argparse._SubParsersAction[ArgumentParser]) -> None:
    p = subparsers.add_parser("history", help="a dataset's runs: chidori history SCHEMA.TABLE")
    p.add_argument("dataset", metavar="SCHEMA.TABLE")
    add_connection_flags(p)
    p.add_argument("--limit", type=positive_int, metavar="N", help="runs to show (server: 50)")
    p.set_defaults(handler=show_history)


def split_dataset(value: str) -> tuple[str, str]:
    schema, dot, table = value.partition(".")
    if not dot or not schema.strip() or not table.strip():
        raise UsageError(f"expected SCHEMA.TABLE (e.g. sales.orders), got {value!r}")
    return schema.strip(), table.strip()


def percentile(values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def succeeded_durations(runs: list[JsonObject]) -> list[float]:
    return [
        float(run["duration_seconds"])
        for run in runs
        if run.get("state") == JobState.SUCCEEDED
        and isinstance(run.get("duration_seconds"), int | float)
    ]


def run_row(run: JsonObject) -> list[str]:
    duration = run.get("duration_seconds")
    return [
        text(run.get("id")),
        text(run.get("state")),
        format_time(run.get("started_at")),
        format_duration(float(duration)) if isinstance(duration, int | float) else "-",
        text(run.get("attempts")),
        text(run.get("reason")),
    ]


def show_history(ns: argparse.Namespace, out: Output) -> int:
    schema, table = split_dataset(ns.dataset)
    with connect(ns) as client:
        page = client.dataset_history(schema, table, ns.limit)
    runs = [r for r in page.get("items") or [] if isinstance(r, dict)]
    durations = succeeded_durations(runs)
    p50, p95 = percentile(durations, 0.5), percentile(durations, 0.95)
    if ns.json:
        out.json({**page, "p50_seconds": p50, "p95_seconds": p95})
        return ExitCode.OK
    if not runs:
        out.err(f"no runs of {schema}.{table} (that you may see)")
        return ExitCode.OK
    out.table(COLUMNS, [run_row(r) for r in runs], right=("ID", "DURATION", "ATTEMPTS"))
    failed = sum(1 for r in runs if r.get("state") == JobState.FAILED)
    summary = f"{len(runs)} runs, {len(durations)} succeeded, {failed} failed"
    if p50 is not None and p95 is not None:
        summary += f"; duration p50 {format_duration(p50)}, p95 {format_duration(p95)}"
    out.out(summary)
    if page.get("next_cursor"):
        out.err("older runs: use a larger --limit")
    return ExitCode.OK
