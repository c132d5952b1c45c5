"""``chidori envs list|prune|show`` and ``chidori envs base list|create|delete``: the Python
environments jobs run with."""

from __future__ import annotations

import argparse

from chidori.cli.args import ArgumentParser, add_connection_flags, connect
from chidori.cli.output import Output

COLUMNS = ("KEY", "PACKAGES", "SIZE", "USES", "LAST USED")


def add_parsers(subparsers: argparse._SubParsersAction[ArgumentParser]) -> None:
    envs = subparsers.add_parser("envs", help="Python environments of jobs (list, prune, show)")
    actions = envs.add_subparsers(dest="action", metavar="ACTION", required=True)

    p = actions.add_parser("list", help="built environments, least recently used first (admins)")
    add_connection_flags(p)
    p.set_defaults(handler=list_environments)

    p = actions.add_parser("prune", help="remove unused environments down to a budget (admins)")
    p.add_argument(
        "--budget", metavar="SIZE", help="keep at most this much, e.g. 10g or 0 (default: config)"
    )
    add_connection_flags(p)
    p.set_defaults(handler=prune_environments)

    base = actions.add_parser("base", help="base environments: list, create, delete")
    base_actions = base.add_subparsers(dest="base_action", metavar="ACTION", required=True)
    p = base_actions.add_parser("list", help="the base environments jobs may name")
    add_connection_flags(p)
    p.set_defaults(handler=list_bases)
    p = base_actions.add_parser("create", help="resolve, build and keep one (admins)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("requirements", nargs="+", metavar="REQ", help="PEP 508 requirements")
    add_connection_flags(p)
    p.set_defaults(handler=create_base)
    p = base_actions.add_parser("delete", help="forget one; its folder goes once unused (admins)")
    p.add_argument("name", metavar="NAME")
    add_connection_flags(p)
    p.set_defaults(handler=delete_base)

    p = actions.add_parser("show", help="a job's environment: packages and build log")
    p.add_argument("job", type=int, metavar="JOB")
    add_connection_flags(p)
    p.set_defaults(handler=show_environment)


def _packages(packages: object) -> str:
    if not isinstance(packages, dict):
        return ""
    return " ".join(f"{name}=={version}" for name, version in sorted(packages.items()))


def list_environments(ns: argparse.Namespace, out: Output) -> int:
    with connect(ns) as client:
        items = client.list_environments()
    if ns.json:
        out.json({"items": items})
        return 0
    rows = [
        [
            str(e.get("key", ""))[:12],
            _packages(e.get("packages")),
            f"{int(e.get('size_bytes') or 0) / 1e6:.1f} MB",
            str(e.get("uses", 0)),
            str(e.get("last_used_at", "")),
        ]
        for e in items
    ]
    out.table(COLUMNS, rows, right=("SIZE", "USES"))
    return 0


def prune_environments(ns: argparse.Namespace, out: Output) -> int:
    with connect(ns) as client:
        answer = client.prune_environments(ns.budget)
    if ns.json:
        out.json(answer)
        return 0
    removed = answer.get("removed") or []
    out.out(f"removed {len(removed)} environment(s)")
    for key in removed:
        out.out(f"  {key}")
    return 0


def show_environment(ns: argparse.Namespace, out: Output) -> int:
    with connect(ns) as client:
        found = client.job_environment(ns.job)
    if ns.json:
        out.json(found)
        return 0
    out.pairs(
        [
            ("state", str(found.get("state", ""))),
            ("key", str(found.get("key") or "")),
            ("packages", _packages(found.get("packages"))),
        ]
    )
    if found.get("log"):
        out.out()
        out.out(str(found["log"]))
    return 0


def list_bases(ns: argparse.Namespace, out: Output) -> int:
    with connect(ns) as client:
        items = client.list_base_environments()
    if ns.json:
        out.json({"items": items})
        return 0
    rows = [
        [str(b.get("name", "")), _packages(b.get("packages")), str(b.get("created_by", ""))]
        for b in items
    ]
    out.table(("NAME", "PACKAGES", "CREATED BY"), rows)
    return 0


def create_base(ns: argparse.Namespace, out: Output) -> int:
    with connect(ns) as client:
        made = client.create_base_environment(ns.name, list(ns.requirements))
    if ns.json:
        out.json(made)
    else:
        out.out(f"base environment {made.get('name')}: {_packages(made.get('packages'))}")
    return 0


def delete_base(ns: argparse.Namespace, out: Output) -> int:
    with connect(ns) as client:
        client.delete_base_environment(ns.name)
    if not ns.json:
        out.out(f"base environment {ns.name} deleted")
    return 0
