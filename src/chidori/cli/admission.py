"""``chidori queues``, ``chidori capacity`` and ``chidori admin limits|queues``: admission."""

from __future__ import annotations

import argparse
import copy
from typing import Any

from chidori.cli.args import (
    ArgumentParser,
    add_connection_flags,
    connect,
    count_or_none,
    positive_float,
    size_or_none,
    whole_number,
)
from chidori.cli.client import JsonObject
from chidori.cli.errors import UsageError
from chidori.cli.output import Output
from chidori.cli.views.admission import (
    CAPACITY_COLUMNS,
    LIMIT_COLUMNS,
    LIMIT_KEYS,
    QUEUE_COLUMNS,
    capacity_rows,
    limits_rows,
    queue_pairs,
    queue_row,
)
from chidori.cli.views.cells import plural

QUEUE_KEYS = ("priority", "weight", *LIMIT_KEYS)
NEW_QUEUE: JsonObject = {
    "priority": 0,
    "weight": 1.0,
    "max_running_jobs": None,
    "max_memory": None,
    "max_cores": None,
}


# -- parsers -------------------------------------------------------------------------------


def add_parsers(subparsers: argparse._SubParsersAction[ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "queues", help="queues: priority, weight, quota, jobs waiting and running"
    )
    add_connection_flags(p)
    p.set_defaults(handler=list_queues)

    p = subparsers.add_parser(
        "capacity", help="admission limits, what jobs reserve and what is free; per cluster"
    )
    add_connection_flags(p)
    p.set_defaults(handler=show_capacity)


def add_admin_groups(groups: argparse._SubParsersAction[ArgumentParser]) -> None:
    """``admin limits show|set`` and ``admin queues set``."""
    limits = groups.add_parser("limits", help="how much may run at once, globally and per cluster")
    actions = limits.add_subparsers(dest="action", metavar="ACTION", required=True)

    p = actions.add_parser("show", help="the current admission limits")
    add_connection_flags(p)
    p.set_defaults(handler=show_limits)

    p = actions.add_parser(
        "set",
        help="change admission limits",
        description="Read the current limits, apply these changes, write the whole document "
        "back and print it. 'none' removes a limit. With --cluster the limits given apply to "
        "that cluster instead of the global ones.",
    )
    add_connection_flags(p)
    _add_limit_flags(p)
    p.add_argument("--cluster", metavar="NAME", help="change this cluster's limits")
    p.set_defaults(handler=set_limits)

    queues = groups.add_parser("queues", help="create or change queues")
    actions = queues.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = actions.add_parser(
        "set",
        help="create a queue or change parts of one",
        description="Read the queue (if it exists), apply these changes and write it back. "
        "A new queue starts at priority 0, weight 1, no quota. 'none' removes a cap.",
    )
    p.add_argument("name", metavar="NAME")
    add_connection_flags(p)
    p.add_argument(
        "--priority",
        type=whole_number,
        metavar="N",
        default=argparse.SUPPRESS,
        help="higher-priority queues are served first",
    )
    p.add_argument(
        "--weight",
        type=positive_float,
        metavar="W",
        default=argparse.SUPPRESS,
        help="fair share against queues of the same priority",
    )
    _add_limit_flags(p)
    p.set_defaults(handler=set_queue)


def _add_limit_flags(p: ArgumentParser) -> None:
    # SUPPRESS: a limit not given is absent from the namespace; `none` parses to None.
    p.add_argument(
        "--max-running-jobs", type=count_or_none, metavar="N|none", default=argparse.SUPPRESS
    )
    p.add_argument(
        "--max-memory", type=size_or_none, metavar="SIZE|none", default=argparse.SUPPRESS
    )
    p.add_argument("--max-cores", type=count_or_none, metavar="N|none", default=argparse.SUPPRESS)


def _given(ns: argparse.Namespace, keys: tuple[str, ...]) -> dict[str, Any]:
    return {key: getattr(ns, key) for key in keys if hasattr(ns, key)}


# -- queues and capacity -------------------------------------------------------------------


def list_queues(ns: argparse.Namespace, out: Output) -> int:
    with connect(ns) as client:
        items = client.list_queues()
    if ns.json:
        out.json({"items": items})
    else:
        out.table(
            QUEUE_COLUMNS,
            [queue_row(q) for q in items],
            right=("PRIORITY", "WEIGHT", "DEPTH", "RUNNING", "OLDEST WAIT"),
        )
    return 0


def show_capacity(ns: argparse.Namespace, out: Output) -> int:
    with connect(ns) as client:
        capacity = client.capacity()
    if ns.json:
        out.json(capacity)
        return 0
    out.table(CAPACITY_COLUMNS, capacity_rows(capacity))
    out.out()
    waiting = capacity.get("waiting")
    out.pairs([("waiting", plural(waiting, "job") if isinstance(waiting, int) else "-")])
    return 0


# -- limits --------------------------------------------------------------------------------


def merge_limits(
    current: JsonObject, changes: dict[str, Any], cluster: str | None = None
) -> JsonObject:
    """The whole limits document with ``changes`` applied to the global limits, or to
    ``cluster``'s (a cluster not there yet starts unlimited); ``current`` is left untouched."""
    limits: JsonObject = copy.deepcopy(current)
    if cluster is None:
        limits.update(changes)
        return limits
    clusters = limits.get("clusters")
    clusters = dict(clusters) if isinstance(clusters, dict) else {}
    existing = clusters.get(cluster)
    base = dict(existing) if isinstance(existing, dict) else dict.fromkeys(LIMIT_KEYS)
    clusters[cluster] = {**base, **changes}
    limits["clusters"] = clusters
    return limits


def show_limits(ns: argparse.Namespace, out: Output) -> int:
    with connect(ns) as client:
        limits = client.get_limits()
    _print_limits(limits, out, json=ns.json)
    return 0


def set_limits(ns: argparse.Namespace, out: Output) -> int:
    changes = _given(ns, LIMIT_KEYS)
    if not changes:
        raise UsageError(
            "nothing to change", hint="give --max-running-jobs, --max-memory or --max-cores"
        )
    cluster = ns.cluster.strip() if ns.cluster is not None else None
    if cluster == "":
        raise UsageError("--cluster needs a cluster name")
    with connect(ns) as client:
        current = client.get_limits()
        limits = client.put_limits(merge_limits(current, changes, cluster))
    _print_limits(limits, out, json=ns.json)
    return 0


def _print_limits(limits: JsonObject, out: Output, *, json: bool) -> None:
    if json:
        out.json(limits)
    else:
        out.table(LIMIT_COLUMNS, limits_rows(limits))


# -- queue settings ------------------------------------------------------------------------


def merge_queue(current: JsonObject | None, changes: dict[str, Any]) -> JsonObject:
    """The PUT body for a queue: its settings (or a new queue's defaults) with ``changes``.

    Only the settings go back, not what ``GET /queues`` reports about it (depth, running).
    """
    base = NEW_QUEUE if current is None else current
    body = {key: base.get(key, NEW_QUEUE[key]) for key in QUEUE_KEYS}
    body.update(changes)
    return body


def set_queue(ns: argparse.Namespace, out: Output) -> int:
    changes = _given(ns, QUEUE_KEYS)
    with connect(ns) as client:
        current = next((q for q in client.list_queues() if q.get("name") == ns.name), None)
        if current is not None and not changes:
            raise UsageError(
                f"nothing to change: queue {ns.name!r} exists",
                hint="give --priority, --weight, --max-running-jobs, --max-memory or --max-cores",
            )
        queue = client.put_queue(ns.name, merge_queue(current, changes))
    if ns.json:
        out.json(queue)
    else:
        if current is None:
            out.note(f"queue {ns.name!r} created")
        out.pairs(queue_pairs(queue, ns.name))
    return 0
