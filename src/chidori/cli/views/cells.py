"""One cell's text, shared by every view: ``-`` for an absent value, server times in local
time, durations, counts with their noun, and plain-text columns aligned."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any


def text(value: Any) -> str:
    if value is None or value == "" or value == [] or value == {}:
        return "-"
    return str(value)


def align(rows: Iterable[Sequence[str]]) -> list[str]:
    """Plain text columns separated by two spaces; the last column is not padded."""
    materialized = [list(r) for r in rows]
    if not materialized:
        return []
    widths = [max(len(r[i]) for r in materialized) for i in range(len(materialized[0]))]
    return [
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip()
        for row in materialized
    ]


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def format_time(value: Any) -> str:
    """ISO 8601 from the server, shown in local time (``-`` when absent)."""
    parsed = parse_time(value)
    if parsed is None:
        return text(value)
    return parsed.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.1f}s"
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def seconds_text(value: Any) -> str:
    """A number of seconds as a duration; ``-`` for anything else."""
    return format_duration(float(value)) if isinstance(value, int | float) else "-"


def number_text(value: Any) -> str:
    """``3.0`` → ``3``, ``0.5`` → ``0.5``; anything else as :func:`text`."""
    if isinstance(value, float):
        return f"{value:g}"
    return text(value)


def plural(count: Any, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def yes_no(value: bool) -> str:
    return "yes" if value else "no"


def as_mapping(value: Any) -> Mapping[str, Any]:
    """A JSON object as it is; anything else (absent, malformed) as an empty one."""
    return value if isinstance(value, dict) else {}
