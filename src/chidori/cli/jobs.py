"""``chidori jobs list|show|cancel|logs`` and the wait/follow loops ``submit`` shares."""

from __future__ import annotations

import argparse
import codecs
import time
from collections.abc import Callable

from chidori.cli.args import (
    ArgumentParser,
    add_connection_flags,
    connect,
    job_id,
    positive_int,
)
from chidori.cli.client import (
    ApiError,
    ChidoriClient,
    JobQuery,
    JsonObject,
    StreamInterrupted,
)
from chidori.cli.errors import UsageError
from chidori.cli.output import Output
from chidori.domain.states import TERMINAL_JOB_STATES, JobState

WAIT_SECONDS = 30
STATES = tuple(state.value for state in JobState)  # plain str: argparse repr()s choices
EXIT_CODES: dict[str, int] = {JobState.SUCCEEDED: 0, JobState.FAILED: 1, JobState.CANCELLED: 3}

sleep: Callable[[float], None] = time.sleep  # replaced in tests


# -- outcome -------------------------------------------------------------------------------


def outcome_code(job: JsonObject) -> int:
    """0 for SUCCEEDED, 1 for FAILED (or anything unexpected), 3 for CANCELLED."""
    return EXIT_CODES.get(str(job.get("state")), 1)


def report_outcome(job: JsonObject, out: Output) -> None:
    state = str(job.get("state"))
    if state != JobState.SUCCEEDED:
        reason = job.get("reason")
        out.err(f"job {job.get('id')} {state}" + (f": {reason}" if reason else ""))


# -- waiting and following -----------------------------------------------------------------


def _is_terminal(job: JsonObject) -> bool:
    return job.get("state") in TERMINAL_JOB_STATES


def wait_for_end(
    client: ChidoriClient, job: JsonObject, out: Output, *, progress: bool = True
) -> JsonObject:
    """Long-poll until the job ends, printing each state change on stderr."""
    if progress:
        out.transition(job)
    while not _is_terminal(job):
        job = _next_state(client, job, out, progress=progress)
    return job


def _next_state(
    client: ChidoriClient, job: JsonObject, out: Output, *, progress: bool
) -> JsonObject:
    state = str(job.get("state"))
    new = client.wait_job(int(job["id"]), state, timeout=WAIT_SECONDS)
    if progress and new.get("state") != state:
        out.transition(new)
    return new


def follow_job(
    client: ChidoriClient,
    job: JsonObject,
    out: Output,
    *,
    progress: bool = True,
    logs_to_stderr: bool = False,
    attempt: int | None = None,
    tail: int | None = None,
) -> JsonObject:
    """Stream the driver log until the job ends; returns the final job.

    Waits (printing state changes when ``progress``) while the job is not running yet,
    reconnects from the last byte offset if a stream ends early, and starts over at
    offset 0 when a retry begins a new attempt (unless ``attempt`` pins one).
    """
    write = out.stderr.write if logs_to_stderr else out.stdout.write
    flush = out.stderr.flush if logs_to_stderr else out.stdout.flush
    job_id = int(job["id"])
    if progress:
        out.transition(job)
    offset: int | None = 0
    if tail is not None:
        try:
            chunk = client.job_logs(job_id, attempt=attempt, tail=tail)
        except ApiError as exc:
            if exc.status != 404:  # 404: no log yet, follow from the start
                raise
        else:
            write(chunk.text)
            flush()
            offset = chunk.next_offset
    seen_attempt = job.get("attempts")
    while True:
        if not _is_terminal(job) and job.get("state") != JobState.RUNNING:
            job = _next_state(client, job, out, progress=progress)
            continue
        if attempt is None and job.get("attempts") != seen_attempt:
            if progress and seen_attempt:  # a retry: its log starts afresh
                out.err(f"--- attempt {job.get('attempts')} ---")
            seen_attempt = job.get("attempts")
            offset = 0
        ended = _is_terminal(job)
        received = 0
        if not (ended and not job.get("attempts") and attempt is None):
            received = _stream(client, job_id, attempt, offset, write, flush)
        if offset is not None:
            offset += received
        if ended:
            return job
        state = job.get("state")
        job = client.get_job(job_id)
        if progress and job.get("state") != state:
            out.transition(job)
        if not received and not _is_terminal(job):
            sleep(1.0)


def _stream(
    client: ChidoriClient,
    job_id: int,
    attempt: int | None,
    offset: int | None,
    write: Callable[[str], object],
    flush: Callable[[], None],
) -> int:
    """Copy one follow stream to ``write``; returns the bytes received."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    received = 0
    try:
        for chunk in client.follow_logs(job_id, attempt=attempt, offset=offset):
            received += len(chunk)
            write(decoder.decode(chunk))
            flush()
    except StreamInterrupted:
        pass  # reconnect from the offset reached
    except ApiError as exc:
        if exc.status != 404:  # no log yet
            raise
    tail = decoder.decode(b"", final=True)
    if tail:
        write(tail)
        flush()
    return received


# -- subcommands ---------------------------------------------------------------------------


def add_parsers(subparsers: argparse._SubParsersAction[ArgumentParser]) -> None:
    jobs = subparsers.add_parser("jobs", help="list, inspect, cancel jobs and read their logs")
    actions = jobs.add_subparsers(dest="action", metavar="ACTION", required=True)

    p = actions.add_parser("list", help="list jobs, newest first")
    add_connection_flags(p)
    p.add_argument("--state", action="append", default=[], type=str.upper, choices=STATES)
    p.add_argument("--schema")
    p.add_argument("--table")
    p.add_argument("--queue")
    p.add_argument("--cluster")
    p.add_argument("--user")
    p.add_argument("--label", action="append", default=[], metavar="K:V")
    p.add_argument("--search", metavar="Q", help="free-text search")
    p.add_argument("--created-after", metavar="TIME", help="ISO 8601")
    p.add_argument("--created-before", metavar="TIME", help="ISO 8601")
    p.add_argument("--limit", type=positive_int, metavar="N", help="page size")
    p.add_argument("--all", action="store_true", help="follow next_cursor to the last page")
    p.set_defaults(handler=list_jobs)

    p = actions.add_parser("show", help="one job in detail, with its events")
    p.add_argument("id", type=job_id, metavar="ID")
    add_connection_flags(p)
    p.set_defaults(handler=show_job)

    p = actions.add_parser("cancel", help="cancel a job (queued: at once; running: stop it)")
    p.add_argument("id", type=job_id, metavar="ID")
    add_connection_flags(p)
    p.set_defaults(handler=cancel_job)

    p = actions.add_parser("logs", help="print (or --follow) a job's driver log")
    p.add_argument("id", type=job_id, metavar="ID")
    add_connection_flags(p, json=False)
    p.add_argument("--attempt", type=positive_int, metavar="N", help="default: the latest")
    p.add_argument("--tail", type=positive_int, metavar="N", help="only the last N lines")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing until the job ends")
    p.set_defaults(handler=job_logs)


def _client(ns: argparse.Namespace) -> ChidoriClient:
    return connect(ns)


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


def list_jobs(ns: argparse.Namespace, out: Output) -> int:
    query = JobQuery(
        states=list(ns.state),
        schema=ns.schema,
        table=ns.table,
        queue=ns.queue,
        cluster=ns.cluster,
        user=ns.user,
        labels=[label_filter(v) for v in ns.label],
        q=ns.search,
        created_after=ns.created_after,
        created_before=ns.created_before,
        limit=ns.limit,
    )
    items: list[JsonObject] = []
    cursor: str | None = None
    seen: set[str] = set()
    with _client(ns) as client:
        while True:
            page = client.list_jobs(query, cursor)
            items.extend(i for i in page.get("items") or [] if isinstance(i, dict))
            next_cursor = page.get("next_cursor")
            cursor = str(next_cursor) if next_cursor else None
            if not ns.all or cursor is None or cursor in seen:
                break
            seen.add(cursor)
    if ns.json:
        out.json({"items": items, "next_cursor": None if ns.all else cursor})
        return 0
    out.job_list(items)
    if cursor and not ns.all and out.human:
        out.err("more jobs: use --all (or a larger --limit) to see them")
    return 0


def show_job(ns: argparse.Namespace, out: Output) -> int:
    with _client(ns) as client:
        job = client.get_job(ns.id)
        if ns.json:
            out.json(job)
            return 0
        events = client.job_events(ns.id)
    out.job_detail(job, events)
    return 0


def cancel_job(ns: argparse.Namespace, out: Output) -> int:
    with _client(ns) as client:
        job = client.cancel_job(ns.id)
    if ns.json:
        out.json(job)
    elif job.get("state") == JobState.CANCELLED:
        out.out(f"job {ns.id} cancelled")
    else:
        out.out(f"job {ns.id}: cancel requested (state {job.get('state')})")
    return 0


def job_logs(ns: argparse.Namespace, out: Output) -> int:
    with _client(ns) as client:
        if not ns.follow:
            chunk = client.job_logs(ns.id, attempt=ns.attempt, tail=ns.tail)
            out.write(chunk.text)
            # Answers are windows (at most 1 MiB): read on to the end the first one saw.
            while (
                ns.tail is None
                and chunk.text
                and chunk.next_offset is not None
                and (chunk.size is not None and chunk.next_offset < chunk.size)
            ):
                chunk = client.job_logs(ns.id, attempt=ns.attempt, offset=chunk.next_offset)
                out.write(chunk.text)
            return 0
        job = client.get_job(ns.id)
        try:
            final = follow_job(client, job, out, progress=False, attempt=ns.attempt, tail=ns.tail)
        except KeyboardInterrupt:
            return 130
    return outcome_code(final)
