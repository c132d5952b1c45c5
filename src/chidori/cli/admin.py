"""``chidori admin users|policy|warm-pool|audit``: manage users, the job policy and the warm
pools, read the audit trail.

``admin limits`` and ``admin queues`` live in :mod:`chidori.cli.admission`.
"""

from __future__ import annotations

import argparse
import copy
from dataclasses import dataclass, field
from typing import Any

from chidori.cli import admission
from chidori.cli.args import (
    ArgumentParser,
    add_connection_flags,
    comma_list,
    connect,
    int_or_none,
    positive_int,
    size_or_none,
)
from chidori.cli.client import JsonObject
from chidori.cli.errors import UsageError
from chidori.cli.output import Output
from chidori.cli.views.admin import AUDIT_COLUMNS, audit_row, policy_pairs
from chidori.cli.views.identity import STATUS_STYLES, USER_COLUMNS, user_pairs, user_row
from chidori.cli.views.warm_pools import (
    WARM_DRIVER_COLUMNS,
    WARM_POOL_COLUMNS,
    WARM_STYLES,
    warm_driver_rows,
    warm_pool_pairs,
    warm_pool_row,
)
from chidori.domain.identity import Role

ROLES = tuple(role.value for role in Role)
SIZE_CAPS = ("max_driver_memory", "max_executor_memory")
CAPS = (
    "max_driver_memory",
    "max_driver_cores",
    "max_executor_memory",
    "max_executor_cores",
    "max_executor_instances",
)
AUDIT_PAGE_MAX = 1000


# -- parsers -------------------------------------------------------------------------------


def add_parsers(subparsers: argparse._SubParsersAction[ArgumentParser]) -> None:
    admin = subparsers.add_parser(
        "admin",
        help="users, job policy, admission limits, queues, warm pools, audit trail (admins)",
    )
    groups = admin.add_subparsers(dest="group", metavar="GROUP", required=True)
    _add_users(groups)
    _add_policy(groups)
    admission.add_admin_groups(groups)
    _add_warm_pool(groups)

    p = groups.add_parser("audit", help="who changed users, tokens, policy; newest first")
    add_connection_flags(p)
    p.add_argument(
        "--limit", type=positive_int, metavar="N", help=f"page size (1-{AUDIT_PAGE_MAX})"
    )
    p.add_argument("--all", action="store_true", help="follow next_cursor to the last page")
    p.set_defaults(handler=audit)


def _add_users(groups: argparse._SubParsersAction[ArgumentParser]) -> None:
    users = groups.add_parser("users", help="list, add and update users")
    actions = users.add_subparsers(dest="action", metavar="ACTION", required=True)

    p = actions.add_parser("list", help="every user with role, team and what they may use")
    add_connection_flags(p)
    p.set_defaults(handler=list_users)

    p = actions.add_parser("add", help="create a user (then give them a token)")
    p.add_argument("name", metavar="NAME")
    add_connection_flags(p)
    p.add_argument("--role", choices=ROLES, help="default: user")
    p.add_argument("--team", metavar="T")
    p.add_argument(
        "--cluster",
        action="append",
        metavar="C",
        help="a cluster they may use (repeatable; default: all)",
    )
    p.add_argument(
        "--queue",
        action="append",
        metavar="Q",
        help="a queue they may use (repeatable; default: all)",
    )
    p.set_defaults(handler=add_user)

    p = actions.add_parser("update", help="change a user; only the options given change")
    p.add_argument("name", metavar="NAME")
    add_connection_flags(p)
    p.add_argument("--role", choices=ROLES)
    p.add_argument("--team", metavar="T")
    clusters = p.add_mutually_exclusive_group()
    clusters.add_argument(
        "--cluster", action="append", metavar="C", help="the clusters they may use (repeatable)"
    )
    clusters.add_argument("--all-clusters", action="store_true", help="may use every cluster")
    queues = p.add_mutually_exclusive_group()
    queues.add_argument(
        "--queue", action="append", metavar="Q", help="the queues they may use (repeatable)"
    )
    queues.add_argument("--all-queues", action="store_true", help="may use every queue")
    state = p.add_mutually_exclusive_group()
    state.add_argument("--disable", action="store_true", help="refuse their tokens")
    state.add_argument("--enable", action="store_true", help="accept their tokens again")
    p.set_defaults(handler=update_user)


def _add_policy(groups: argparse._SubParsersAction[ArgumentParser]) -> None:
    policy = groups.add_parser("policy", help="what jobs may ask for")
    actions = policy.add_subparsers(dest="action", metavar="ACTION", required=True)

    p = actions.add_parser("show", help="the current policy")
    add_connection_flags(p)
    p.set_defaults(handler=show_policy)

    p = actions.add_parser(
        "set",
        help="change parts of the policy",
        description="Read the current policy, apply these changes, write the whole policy "
        "back and print it. 'none' removes a cap.",
    )
    add_connection_flags(p)
    # SUPPRESS: a cap not given is absent from the namespace; `none` parses to None.
    for key in CAPS:
        size = key in SIZE_CAPS
        p.add_argument(
            _flag(key),
            type=size_or_none if size else int_or_none,
            metavar="SIZE|none" if size else "N|none",
            default=argparse.SUPPRESS,
        )
    p.add_argument(
        "--forbid-conf",
        action="append",
        default=[],
        metavar="PATTERN",
        help="add a forbidden conf key pattern, e.g. 'spark.kubernetes.*' (repeatable)",
    )
    p.add_argument(
        "--allow-conf",
        action="append",
        default=[],
        metavar="PATTERN",
        help="remove a pattern from the forbidden conf keys (repeatable)",
    )
    p.add_argument(
        "--allowed-schemes",
        type=comma_list,
        metavar="a,b,c",
        help="replace the URL schemes applications may come from",
    )
    exempt = p.add_mutually_exclusive_group()
    exempt.add_argument(
        "--admins-exempt",
        action="store_true",
        default=None,
        help="admins are not held to the caps and forbidden conf keys",
    )
    exempt.add_argument(
        "--no-admins-exempt", action="store_false", dest="admins_exempt", help="admins are too"
    )
    p.set_defaults(handler=set_policy)


def _add_warm_pool(groups: argparse._SubParsersAction[ArgumentParser]) -> None:
    warm = groups.add_parser(
        "warm-pool",
        help="warm drivers kept ready per cluster: show, set, reset",
        description="Without an action: every cluster's warm pool and its drivers.",
    )
    add_connection_flags(warm)
    warm.set_defaults(handler=show_warm_pools)
    actions = warm.add_subparsers(dest="action", metavar="ACTION")

    p = actions.add_parser("show", help="every cluster's warm pool and its drivers (default)")
    add_connection_flags(p)
    p.set_defaults(handler=show_warm_pools)

    p = actions.add_parser(
        "set",
        help="keep N warm drivers per server for a cluster (0 turns the pool off)",
        description="Applies at once: missing drivers are started, extra idle ones stopped.",
    )
    p.add_argument("cluster", metavar="CLUSTER")
    p.add_argument("size", type=positive_int, metavar="N")
    add_connection_flags(p)
    p.set_defaults(handler=set_warm_pool)

    p = actions.add_parser("reset", help="back to the size the server's config gives")
    p.add_argument("cluster", metavar="CLUSTER")
    add_connection_flags(p)
    p.set_defaults(handler=set_warm_pool, size=None)


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


# -- users ---------------------------------------------------------------------------------


def list_users(ns: argparse.Namespace, out: Output) -> int:
    with connect(ns) as client:
        items = client.list_users()
    if ns.json:
        out.json({"items": items})
    else:
        out.table(USER_COLUMNS, [user_row(u) for u in items], styles=STATUS_STYLES)
    return 0


def add_user(ns: argparse.Namespace, out: Output) -> int:
    with connect(ns) as client:
        user = client.create_user(
            ns.name, role=ns.role, team=ns.team, clusters=ns.cluster, queues=ns.queue
        )
    _print_user(user, out, json=ns.json)
    return 0


def user_changes(ns: argparse.Namespace) -> JsonObject:
    """The PATCH body the ``admin users update`` options ask for (``None`` = all)."""
    changes: JsonObject = {}
    if ns.role is not None:
        changes["role"] = ns.role
    if ns.team is not None:
        changes["team"] = ns.team
    if ns.cluster is not None or ns.all_clusters:
        changes["clusters"] = None if ns.all_clusters else list(ns.cluster)
    if ns.queue is not None or ns.all_queues:
        changes["queues"] = None if ns.all_queues else list(ns.queue)
    if ns.disable or ns.enable:
        changes["disabled"] = bool(ns.disable)
    return changes


def update_user(ns: argparse.Namespace, out: Output) -> int:
    changes = user_changes(ns)
    if not changes:
        raise UsageError(
            "nothing to change", hint="give --role, --team, --cluster, --queue, --disable, ..."
        )
    with connect(ns) as client:
        user = client.update_user(ns.name, changes)
    _print_user(user, out, json=ns.json)
    return 0


def _print_user(user: JsonObject, out: Output, *, json: bool) -> None:
    if json:
        out.json(user)
    else:
        out.pairs(user_pairs(user))


# -- policy --------------------------------------------------------------------------------


@dataclass
class PolicyChanges:
    """What ``admin policy set`` changes; anything not given stays as it is."""

    caps: dict[str, str | int | None] = field(default_factory=dict)  # only the given caps
    forbid: list[str] = field(default_factory=list)
    allow: list[str] = field(default_factory=list)
    allowed_schemes: list[str] | None = None
    admins_exempt: bool | None = None

    def empty(self) -> bool:
        return not (
            self.caps
            or self.forbid
            or self.allow
            or self.allowed_schemes is not None
            or self.admins_exempt is not None
        )


def merge_policy(current: JsonObject, changes: PolicyChanges) -> JsonObject:
    """The whole policy with ``changes`` applied; ``current`` is left untouched.

    Caps are replaced (``None`` = no cap). ``forbid`` patterns are appended unless already
    there; ``allow`` patterns are removed from ``forbidden_conf`` (compared without regard
    to case, as the server matches them). ``allowed_schemes`` replaces the list.
    """
    clash = {p.lower() for p in changes.forbid} & {p.lower() for p in changes.allow}
    if clash:
        raise UsageError(
            *(f"{p!r} is both forbidden and allowed" for p in sorted(clash)),
        )
    policy: JsonObject = copy.deepcopy(current)
    policy.update(changes.caps)
    forbidden: list[Any] = list(policy.get("forbidden_conf") or [])
    known = {str(p).lower() for p in forbidden}
    for pattern in changes.forbid:
        if pattern.lower() not in known:
            forbidden.append(pattern)
            known.add(pattern.lower())
    allowed = {p.lower() for p in changes.allow}
    policy["forbidden_conf"] = [p for p in forbidden if str(p).lower() not in allowed]
    if changes.allowed_schemes is not None:
        policy["allowed_schemes"] = list(changes.allowed_schemes)
    if changes.admins_exempt is not None:
        policy["admins_exempt"] = changes.admins_exempt
    return policy


def policy_changes(ns: argparse.Namespace) -> PolicyChanges:
    caps: dict[str, str | int | None] = {key: getattr(ns, key) for key in CAPS if hasattr(ns, key)}
    return PolicyChanges(
        caps=caps,
        forbid=list(ns.forbid_conf),
        allow=list(ns.allow_conf),
        allowed_schemes=ns.allowed_schemes,
        admins_exempt=ns.admins_exempt,
    )


def show_policy(ns: argparse.Namespace, out: Output) -> int:
    with connect(ns) as client:
        policy = client.get_policy()
    _print_policy(policy, out, json=ns.json)
    return 0


def set_policy(ns: argparse.Namespace, out: Output) -> int:
    changes = policy_changes(ns)
    if changes.empty():
        raise UsageError("nothing to change", hint="see `chidori admin policy set --help`")
    with connect(ns) as client:
        current = client.get_policy()
        present = {str(p).lower() for p in current.get("forbidden_conf") or []}
        for pattern in changes.allow:
            if pattern.lower() not in present:
                out.note(f"{pattern!r} was not a forbidden conf pattern")
        policy = client.put_policy(merge_policy(current, changes))
    _print_policy(policy, out, json=ns.json)
    return 0


def _print_policy(policy: JsonObject, out: Output, *, json: bool) -> None:
    if json:
        out.json(policy)
    else:
        out.pairs(policy_pairs(policy))


# -- warm pools ----------------------------------------------------------------------------


def show_warm_pools(ns: argparse.Namespace, out: Output) -> int:
    with connect(ns) as client:
        pools = client.warm_pools()
    if ns.json:
        out.json({"items": pools})
        return 0
    out.table(WARM_POOL_COLUMNS, [warm_pool_row(p) for p in pools], right=("SIZE", "CONFIGURED"))
    _print_warm_drivers(pools, out)
    return 0


def set_warm_pool(ns: argparse.Namespace, out: Output) -> int:
    cluster = ns.cluster.strip()
    if not cluster:
        raise UsageError("CLUSTER needs a cluster name")
    with connect(ns) as client:
        pool = client.set_warm_size(cluster, ns.size)
    if ns.json:
        out.json(pool)
        return 0
    out.pairs(warm_pool_pairs(pool))
    _print_warm_drivers([pool], out)
    return 0


def _print_warm_drivers(pools: list[JsonObject], out: Output) -> None:
    rows = warm_driver_rows(pools)
    out.out()
    if not rows:
        out.out("no warm drivers")
        return
    out.table(WARM_DRIVER_COLUMNS, rows, right=("PID",), styles=WARM_STYLES)


# -- audit ---------------------------------------------------------------------------------


def audit(ns: argparse.Namespace, out: Output) -> int:
    limit = ns.limit
    if limit is not None and not 1 <= limit <= AUDIT_PAGE_MAX:
        raise UsageError(f"--limit must be between 1 and {AUDIT_PAGE_MAX}")
    items: list[JsonObject] = []
    cursor: str | None = None
    seen: set[str] = set()
    with connect(ns) as client:
        while True:
            page = client.audit(limit, cursor)
            items.extend(i for i in page.get("items") or [] if isinstance(i, dict))
            next_cursor = page.get("next_cursor")
            cursor = str(next_cursor) if next_cursor else None
            if not ns.all or cursor is None or cursor in seen:
                break
            seen.add(cursor)
    if ns.json:
        out.json({"items": items, "next_cursor": None if ns.all else cursor})
        return 0
    out.table(AUDIT_COLUMNS, [audit_row(e) for e in items], right=("ID",))
    if cursor and not ns.all and out.human:
        out.err("more entries: use --all (or a larger --limit) to see them")
    return 0
