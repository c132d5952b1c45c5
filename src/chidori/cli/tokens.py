"""``chidori whoami`` and ``chidori tokens list|create|revoke``."""

from __future__ import annotations

import argparse

from chidori.cli.args import ArgumentParser, add_connection_flags, connect, token_id
from chidori.cli.output import Output
from chidori.cli.views.cells import format_time
from chidori.cli.views.identity import STATUS_STYLES, TOKEN_COLUMNS, token_row, whoami_pairs


def add_parsers(subparsers: argparse._SubParsersAction[ArgumentParser]) -> None:
    p = subparsers.add_parser("whoami", help="the user, role and team your token belongs to")
    add_connection_flags(p)
    p.set_defaults(handler=whoami)

    tokens = subparsers.add_parser("tokens", help="list, create and revoke API tokens")
    actions = tokens.add_subparsers(dest="action", metavar="ACTION", required=True)

    p = actions.add_parser("list", help="your tokens (admins: everyone's); never the secrets")
    add_connection_flags(p)
    p.add_argument("--user", metavar="U", help="only this user's tokens (admins)")
    p.set_defaults(handler=list_tokens)

    p = actions.add_parser(
        "create",
        help="create a token and print its secret (shown only once)",
        description="Create an API token. The secret alone goes to stdout, so "
        "TOKEN=$(chidori tokens create) works; it is never shown again.",
    )
    add_connection_flags(p)
    p.add_argument("--name", metavar="N", help="a label to recognise it by")
    p.add_argument("--user", metavar="U", help="whose token (admins only; default: yours)")
    p.add_argument(
        "--expires",
        metavar="DURATION",
        help="lifetime such as 30d, 12h or seconds (default 90d, at most 366d)",
    )
    p.set_defaults(handler=create_token)

    p = actions.add_parser("revoke", help="revoke a token at once")
    p.add_argument("id", type=token_id, metavar="ID")
    add_connection_flags(p)
    p.set_defaults(handler=revoke_token)


def whoami(ns: argparse.Namespace, out: Output) -> int:
    with connect(ns) as client:
        who = client.whoami()
    if ns.json:
        out.json(who)
    else:
        out.pairs(whoami_pairs(who))
    return 0


def list_tokens(ns: argparse.Namespace, out: Output) -> int:
    with connect(ns) as client:
        items = client.list_tokens(ns.user)
    if ns.json:
        out.json({"items": items})
    else:
        out.table(TOKEN_COLUMNS, [token_row(t) for t in items], right=("ID",), styles=STATUS_STYLES)
    return 0


def create_token(ns: argparse.Namespace, out: Output) -> int:
    with connect(ns) as client:
        token = client.create_token(name=ns.name, user=ns.user, expires_in=ns.expires)
    secret = token.get("token")
    if ns.json:
        out.json(token)
    elif isinstance(secret, str) and secret:
        out.out(secret)
    else:
        out.error("the server's answer holds no token secret")
        return 1
    expires = format_time(token.get("expires_at"))
    out.warn(
        f"token {token.get('id')} ({token.get('prefix')}…, user {token.get('user')}, "
        f"expires {expires}): the secret is shown only this once; store it now"
    )
    return 0


def revoke_token(ns: argparse.Namespace, out: Output) -> int:
    with connect(ns) as client:
        token = client.revoke_token(ns.id)
    if ns.json:
        out.json(token)
    else:
        out.out(f"token {token.get('id', ns.id)} revoked")
    return 0
