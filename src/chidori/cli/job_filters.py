"""The job filters ``jobs list`` and ``jobs cancel`` share: their flags, comma-separated
states, and times given as ISO 8601, a date, an age (``30m``, ``2d``) or ``today``/``yesterday``,
all turned into a :class:`JobQuery`."""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime, timedelta

from chidori.cli.client import JobQuery
from chidori.cli.errors import UsageError
from chidori.domain.states import JobState

STATES = tuple(state.value for state in JobState)
AGE = re.compile(r"^(\d+)\s*([smhdw])$")
AGE_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
TIME_HELP = "ISO 8601, a date (2026-12-03), an age (30m, 1h, 2d) or today/yesterday"


def add_filter_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state",
        action="append",
        default=[],
        metavar="STATES",
        help=f"comma-separated, any case, repeatable: {', '.join(s.lower() for s in STATES)}",
    )
    parser.add_argument("--schema")
    parser.add_argument("--table")
    parser.add_argument("--queue")
    parser.add_argument("--cluster")
    parser.add_argument("--user")
    parser.add_argument("--label", action="append", default=[], metavar="K:V")
    parser.add_argument("--search", metavar="Q", help="free-text search")
    parser.add_argument("--created-after", metavar="TIME", help=TIME_HELP)
    parser.add_argument("--created-before", metavar="TIME", help=TIME_HELP)


def parse_states(values: list[str]) -> list[str]:
    """``["failed,Cancelled", "queued"]`` → ``["FAILED", "CANCELLED", "QUEUED"]``."""
    states: list[str] = []
    for value in values:
        for part in value.split(","):
            state = part.strip().upper()
            if not state:
                continue
            if state not in STATES:
                raise UsageError(
                    f"--state: unknown state {part.strip()!r}; "
                    f"choose from {', '.join(s.lower() for s in STATES)}"
                )
            if state not in states:
                states.append(state)
    return states


def parse_time(flag: str, value: str, now: datetime | None = None) -> str:
    """A point in time as the API wants it: ISO 8601 with a zone (local time when none)."""
    now = (now or datetime.now(UTC)).astimezone()
    raw = value.strip()
    word = raw.lower()
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if word in ("today", "yesterday"):
        return (midnight - timedelta(days=1 if word == "yesterday" else 0)).isoformat()
    if word == "now":
        return now.isoformat()
    age = AGE.match(word)
    if age:
        amount, unit = int(age.group(1)), AGE_UNITS[age.group(2)]
        return (now - timedelta(**{unit: amount})).isoformat()
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"{flag} expects {TIME_HELP}, not {value!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.astimezone()  # a naive time or a bare date means local time
    return parsed.isoformat()


def label_filter(value: str) -> str:
    """``K:V`` as the API wants it; ``K=V`` is accepted too."""
    if ":" in value:
        key = value.partition(":")[0]
    elif "=" in value:
        key, _, rest = value.partition("=")
        value = f"{key}:{rest}"
    else:
        key = ""
    if not key.strip():
        raise UsageError(f"--label expects KEY:VALUE, got {value!r}")
    return value


def query_of(ns: argparse.Namespace, limit: int | None = None) -> JobQuery:
    return JobQuery(
        states=parse_states(ns.state),
        schema=ns.schema,
        table=ns.table,
        queue=ns.queue,
        cluster=ns.cluster,
        user=ns.user,
        labels=[label_filter(v) for v in ns.label],
        q=ns.search,
        created_after=(
            parse_time("--created-after", ns.created_after) if ns.created_after else None
        ),
        created_before=(
            parse_time("--created-before", ns.created_before) if ns.created_before else None
        ),
        limit=limit,
    )


def any_filter(ns: argparse.Namespace) -> bool:
    return bool(
        ns.state or ns.label or ns.schema or ns.table or ns.queue or ns.cluster or ns.user
        or ns.search or ns.created_after or ns.created_before
    )  # fmt: skip
