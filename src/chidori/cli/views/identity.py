"""Who is who, as the CLI shows it: users (``admin users``), ``whoami`` and API tokens
(``tokens``), with the colours of their roles and statuses."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from chidori.cli.client import JsonObject
from chidori.cli.views.cells import format_time, parse_time, text
from chidori.domain.identity import Role

USER_COLUMNS = ("NAME", "ROLE", "TEAM", "CLUSTERS", "QUEUES", "STATUS", "CREATED")
TOKEN_COLUMNS = ("ID", "USER", "NAME", "PREFIX", "CREATED", "EXPIRES", "STATUS")
STATUS_STYLES: dict[str, dict[str, str]] = {
    "STATUS": {"active": "green", "disabled": "red", "revoked": "red", "expired": "yellow"},
    "ROLE": {Role.ADMIN: "bold"},
}


# -- users ---------------------------------------------------------------------------------


def name_list(value: Any) -> str:
    """Allowed clusters/queues: ``null`` means all of them, ``[]`` none."""
    if value is None:
        return "(all)"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) if value else "(none)"
    return text(value)


def user_row(user: JsonObject) -> list[str]:
    return [
        text(user.get("name")),
        text(user.get("role")),
        text(user.get("team")),
        name_list(user.get("clusters")),
        name_list(user.get("queues")),
        "disabled" if user.get("disabled") else "active",
        format_time(user.get("created_at")),
    ]


def user_pairs(user: JsonObject) -> list[tuple[str, str]]:
    row = user_row(user)
    return [(column.lower(), cell) for column, cell in zip(USER_COLUMNS, row, strict=True)]


def whoami_pairs(who: JsonObject) -> list[tuple[str, str]]:
    return [(key, text(who.get(key))) for key in ("name", "role", "team")]


# -- tokens --------------------------------------------------------------------------------


def token_status(token: JsonObject, now: datetime | None = None) -> str:
    if token.get("revoked_at"):
        return "revoked"
    expires = parse_time(token.get("expires_at"))
    if expires is not None and expires <= (now or datetime.now(UTC)):
        return "expired"
    return "active"


def token_row(token: JsonObject, now: datetime | None = None) -> list[str]:
    return [
        text(token.get("id")),
        text(token.get("user")),
        text(token.get("name")),
        text(token.get("prefix")),
        format_time(token.get("created_at")),
        format_time(token.get("expires_at")),
        token_status(token, now),
    ]
