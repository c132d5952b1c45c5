"""``chidori jobs list`` (filters, paging hints, cut names, a reason column) and ``chidori
jobs cancel`` (one job, several ids, or every job a filter matches, after a confirmation)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from chidori.cli.args import ArgumentParser, add_connection_flags, connect, job_id, positive_int
from chidori.cli.client import ApiError, ChidoriClient, JobQuery, JsonObject, ServerUnreachable
from chidori.cli.errors import UsageError
from chidori.cli.exit_codes import ExitCode, api_error_code
from chidori.cli.job_filters import add_filter_flags, any_filter, parse_states, query_of
from chidori.cli.output import Output
from chidori.domain.states import TERMINAL_JOB_STATES, JobState

ACTIVE_STATES = [s.value for s in JobState if s not in TERMINAL_JOB_STATES]
MAX_BULK_PAGES = 100  # a filter that matches more is most likely a mistake

ask: Callable[[str], str] = input  # replaced in tests
stdin_isatty: Callable[[], bool] = lambda: sys.stdin.isatty()  # noqa: E731


def add_list_parser(actions: argparse._SubParsersAction[ArgumentParser]) -> None:
    p = actions.add_parser("list", help="list jobs, newest first")
    add_connection_flags(p)
    add_filter_flags(p)
    p.add_argument("--limit", type=positive_int, metavar="N", help="page size")
    p.add_argument("--cursor", metavar="C", help="the page after this cursor (see the hint)")
    p.add_argument("--all", action="store_true", help="follow next_cursor to the last page")
    p.add_argument("--wide", action="store_true", help="whole names and reasons")
    p.add_argument(
        "-o", "--output", choices=("table", "wide", "json"), help="json is --json; wide is --wide"
    )
    p.set_defaults(handler=list_jobs)


def add_cancel_parser(actions: argparse._SubParsersAction[ArgumentParser]) -> None:
    p = actions.add_parser(
        "cancel",
        help="cancel jobs: by ids, or every job a filter matches (asks first)",
        description="Cancel jobs by id (`cancel 4 5 6`), or every job the filters match "
        "(`cancel --state queued --queue etl`; --state defaults to the unfinished states). "
        "A filter lists the jobs and asks before cancelling; without a terminal, give --yes.",
    )
    p.add_argument("ids", type=job_id, nargs="*", metavar="ID")
    add_connection_flags(p)
    add_filter_flags(p)
    p.add_argument("--yes", "-y", action="store_true", help="do not ask")
    p.set_defaults(handler=cancel_jobs)


def list_jobs(ns: argparse.Namespace, out: Output) -> int:
    as_json = ns.json or ns.output == "json"
    wide = ns.wide or ns.output == "wide"
    query = query_of(ns, ns.limit)
    items: list[JsonObject] = []
    cursor: str | None = ns.cursor
    seen: set[str] = set()
    with connect(ns) as client:
        while True:
            page = client.list_jobs(query, cursor)
            items.extend(i for i in page.get("items") or [] if isinstance(i, dict))
            next_cursor = page.get("next_cursor")
            cursor = str(next_cursor) if next_cursor else None
            if not ns.all or cursor is None or cursor in seen:
                break
            seen.add(cursor)
    if as_json:
        out.json({"items": items, "next_cursor": None if ns.all else cursor})
        return ExitCode.OK
    out.job_list(items, wide=wide)
    if cursor and not ns.all:
        out.err(
            f"more jobs: the next page with --cursor {cursor} (the same filters), "
            "all of them with --all, or a larger --limit"
        )
    return ExitCode.OK


def _matching(client: ChidoriClient, query: JobQuery) -> list[JsonObject]:
    items: list[JsonObject] = []
    cursor: str | None = None
    for _ in range(MAX_BULK_PAGES):
        page = client.list_jobs(query, cursor)
        items.extend(i for i in page.get("items") or [] if isinstance(i, dict))
        cursor = str(page["next_cursor"]) if page.get("next_cursor") else None
        if cursor is None:
            return items
    raise UsageError(f"the filter matches more than {len(items)} jobs: narrow it")


def _confirm(jobs: list[JsonObject], out: Output, yes: bool) -> bool:
    for job in jobs:
        out.err(f"  {job.get('id')}  {job.get('state')}  {job.get('name')}")
    if yes:
        return True
    if not stdin_isatty():
        raise UsageError(
            f"refusing to cancel {len(jobs)} jobs without a terminal to ask",
            hint="add --yes to cancel them",
        )
    answer = ask(f"cancel these {len(jobs)} jobs? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def cancel_jobs(ns: argparse.Namespace, out: Output) -> int:
    filtered = any_filter(ns)
    if ns.ids and filtered:
        raise UsageError("give job ids or filters, not both")
    if not ns.ids and not filtered:
        raise UsageError(
            "nothing to cancel: give job ids, or filters such as --state queued --queue Q",
            hint="see `chidori jobs cancel --help`",
        )
    with connect(ns) as client:
        if filtered:
            query = query_of(ns)
            if not parse_states(ns.state):
                query.states = list(ACTIVE_STATES)
            jobs = _matching(client, query)
            if not jobs:
                out.err("no job matches these filters")
                return ExitCode.OK
            if not _confirm(jobs, out, ns.yes):
                out.err("nothing cancelled")
                return ExitCode.OK
            ids = [int(job["id"]) for job in jobs]
        else:
            ids = list(dict.fromkeys(ns.ids))
        if len(ids) == 1 and not filtered:
            return _cancel_one_strict(client, ids[0], ns, out)
        return _cancel_each(client, ids, ns, out)


def _cancel_one_strict(
    client: ChidoriClient, job_id_: int, ns: argparse.Namespace, out: Output
) -> int:
    """One id: errors go to ``main`` as for every other command."""
    job = _cancel(client, job_id_)
    if ns.json:
        out.json(job)
    else:
        out.out(_outcome_line(job_id_, job))
    return ExitCode.OK


def _cancel_each(client: ChidoriClient, ids: list[int], ns: argparse.Namespace, out: Output) -> int:
    """Several jobs: each outcome reported; the status is the first failure's (0 if none)."""
    status: int = ExitCode.OK
    results: list[JsonObject] = []
    for each in ids:
        try:
            job = _cancel(client, each)
        except ApiError as exc:
            code = api_error_code(exc)
            results.append({"id": each, "error": exc.message, "status": exc.status})
            out.error(f"job {each}: {exc.message}")
        except ServerUnreachable as exc:
            out.unreachable(exc)
            return ExitCode.SERVER
        else:
            code = ExitCode.OK
            results.append(job)
            if not ns.json:
                out.out(_outcome_line(each, job))
        if status == ExitCode.OK:
            status = code
    if ns.json:
        out.json({"items": results})
    return status


def _cancel(client: ChidoriClient, job_id_: int) -> JsonObject:
    """Cancel one job; a job that had already ended comes back marked ``already_ended``
    (the API answers the same for both)."""
    job = client.get_job(job_id_)
    if job.get("state") in TERMINAL_JOB_STATES:
        return {**job, "already_ended": True}
    return client.cancel_job(job_id_)


def _outcome_line(job_id_: int, job: JsonObject) -> str:
    state = job.get("state")
    if job.get("already_ended"):
        return f"job {job_id_} already ended ({state}): nothing to cancel"
    if state == JobState.CANCELLED:
        return f"job {job_id_} cancelled"
    if state in TERMINAL_JOB_STATES:
        return f"job {job_id_} ended ({state}) before it could be cancelled"
    return f"job {job_id_}: cancel requested (state {state})"
