"""The ``chidori`` exit statuses: one table, shown by ``chidori --help`` and docs/usage.md.

A scheduler wrapping ``chidori submit --wait`` tells a data failure (1) from a timeout (4), an
outage (7) or a bad token (5) by the status alone.
"""

from __future__ import annotations

from enum import IntEnum

from chidori.cli.client import ApiError, JsonObject
from chidori.domain.states import JobState


class ExitCode(IntEnum):
    OK = 0
    JOB_FAILED = 1
    USAGE = 2
    JOB_CANCELLED = 3
    JOB_TIMED_OUT = 4
    AUTH = 5
    NOT_FOUND = 6
    SERVER = 7
    INTERNAL = 8
    INTERRUPTED = 130
    BROKEN_PIPE = 141


MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "success (a waited-for job SUCCEEDED)",
    ExitCode.JOB_FAILED: "the job FAILED",
    ExitCode.USAGE: "bad usage, or a request the server refused as invalid (400, 409, 422)",
    ExitCode.JOB_CANCELLED: "the job was CANCELLED",
    ExitCode.JOB_TIMED_OUT: "the job FAILED by its own timeout (spec `timeout`, --timeout)",
    ExitCode.AUTH: "authentication or authorisation refused (401, 403): check the token",
    ExitCode.NOT_FOUND: "no such job (or dataset, token, user...): 404",
    ExitCode.SERVER: "the server is unreachable or answered with an error (5xx)",
    ExitCode.INTERNAL: "an unexpected error in the CLI itself (CHIDORI_DEBUG=1 shows it)",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C); a submitted job keeps running",
    ExitCode.BROKEN_PIPE: "the output pipe closed early",
}

TIMEOUT_REASON_PREFIX = "timed out"  # how the driver host words a stop by the job's timeout


def timed_out(job: JsonObject) -> bool:
    reason = job.get("reason")
    return (
        job.get("state") == JobState.FAILED
        and isinstance(reason, str)
        and reason.lower().startswith(TIMEOUT_REASON_PREFIX)
    )


def outcome_code(job: JsonObject) -> ExitCode:
    """The exit status a finished job's outcome gives (anything unexpected: JOB_FAILED)."""
    state = job.get("state")
    if state == JobState.SUCCEEDED:
        return ExitCode.OK
    if state == JobState.CANCELLED:
        return ExitCode.JOB_CANCELLED
    return ExitCode.JOB_TIMED_OUT if timed_out(job) else ExitCode.JOB_FAILED


def api_error_code(exc: ApiError) -> ExitCode:
    if exc.status in (401, 403):
        return ExitCode.AUTH
    if exc.status == 404:
        return ExitCode.NOT_FOUND
    if 400 <= exc.status < 500:
        return ExitCode.USAGE
    return ExitCode.SERVER


def help_table() -> str:
    """The table as ``chidori --help`` ends with it."""
    lines = ["exit statuses:"]
    lines += [f"  {int(code):>3}  {meaning}" for code, meaning in MEANINGS.items()]
    return "\n".join(lines)
