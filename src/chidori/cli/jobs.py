"""``chidori jobs show|logs|rerun`` (``list`` and ``cancel`` are in :mod:`chidori.cli.job_list`,
a re-run's spec in :mod:`chidori.cli.job_rerun`) and the wait/follow loops ``submit`` shares."""

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
from chidori.cli.client import ApiError, ChidoriClient, JsonObject, StreamInterrupted
from chidori.cli.exit_codes import ExitCode, outcome_code
from chidori.cli.job_list import add_cancel_parser, add_list_parser
from chidori.cli.job_rerun import add_rerun_parser, rerun_spec
from chidori.cli.output import Output
from chidori.cli.progress_lines import ProgressLines, ui_url
from chidori.domain.states import TERMINAL_JOB_STATES, JobState

WAIT_SECONDS = 30
__all__ = ["follow_job", "outcome_code", "report_outcome", "wait_for_end"]

sleep: Callable[[float], None] = time.sleep  # replaced in tests


# -- outcome -------------------------------------------------------------------------------


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
    """Long-poll until the job ends; with ``progress``, progress lines on stderr."""
    lines = ProgressLines(out) if progress else None
    if lines:
        lines.update(job)
    while not _is_terminal(job):
        job = _next_state(client, job, lines)
    return job


def _next_state(client: ChidoriClient, job: JsonObject, lines: ProgressLines | None) -> JsonObject:
    timeout = lines.poll_seconds(job) if lines else WAIT_SECONDS
    new = client.wait_job(int(job["id"]), str(job.get("state")), timeout=timeout)
    if lines:
        lines.update(new)
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
    lines = ProgressLines(out) if progress else None
    if lines:
        lines.update(job)
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
            job = _next_state(client, job, lines)
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
        job = client.get_job(job_id)
        if lines:
            lines.update(job)
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

    add_list_parser(actions)

    p = actions.add_parser("show", help="one job in detail, with its events")
    p.add_argument("id", type=job_id, metavar="ID")
    add_connection_flags(p)
    p.set_defaults(handler=show_job)

    add_cancel_parser(actions)
    add_rerun_parser(actions, rerun_job)

    p = actions.add_parser("logs", help="print (or --follow) a job's driver log")
    p.add_argument("id", type=job_id, metavar="ID")
    add_connection_flags(p, json=False)
    p.add_argument("--attempt", type=positive_int, metavar="N", help="default: the latest")
    p.add_argument("--tail", type=positive_int, metavar="N", help="only the last N lines")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing until the job ends")
    p.set_defaults(handler=job_logs)


def _client(ns: argparse.Namespace) -> ChidoriClient:
    return connect(ns)


def show_job(ns: argparse.Namespace, out: Output) -> int:
    with _client(ns) as client:
        job = client.get_job(ns.id)
        if ns.json:
            out.json(job)
            return 0
        events = client.job_events(ns.id)
    out.job_detail(job, events)
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
            return ExitCode.INTERRUPTED
    return outcome_code(final)


def rerun_job(ns: argparse.Namespace, out: Output) -> int:
    with _client(ns) as client:
        created = client.submit_job(rerun_spec(client.get_job(ns.id)))
        if not ns.wait:
            if ns.json:
                out.json(created)
            else:
                out.out(str(created["id"]))
            return ExitCode.OK
        if not ns.json:
            out.out(str(created["id"]))
        out.err(f"view it at {ui_url(client.base_url, int(created['id']))}")
        final = wait_for_end(client, created, out)
    if ns.json:
        out.json(final)
    report_outcome(final, out)
    return outcome_code(final)
