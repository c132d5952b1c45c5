"""The admin's records as the CLI shows them: the audit log (``admin audit``) and the
submission policy (``admin policy``)."""

from __future__ import annotations

import json
from typing import Any

from chidori.cli.client import JsonObject
from chidori.cli.views.cells import format_time, text, yes_no

AUDIT_COLUMNS = ("ID", "TIME", "ACTOR", "ACTION", "TARGET", "SOURCE", "DETAIL")
POLICY_LIMITS = (
    ("max_driver_memory", "max driver memory"),
    ("max_driver_cores", "max driver cores"),
    ("max_executor_memory", "max executor memory"),
    ("max_executor_cores", "max executor cores"),
    ("max_executor_instances", "max executor instances"),
)


def compact(value: Any) -> str:
    """A short one-line form of an audit ``detail``: ``k=v k2=v2``."""
    if value is None or value == {}:
        return "-"
    if isinstance(value, dict):
        return " ".join(
            f"{k}={v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)}"
            for k, v in value.items()
        )
    return json.dumps(value, ensure_ascii=False)


def audit_row(entry: JsonObject) -> list[str]:
    return [
        text(entry.get("id")),
        format_time(entry.get("time")),
        text(entry.get("actor")),
        text(entry.get("action")),
        text(entry.get("target")),
        text(entry.get("source")),
        compact(entry.get("detail")),
    ]


def policy_pairs(policy: JsonObject) -> list[tuple[str, str]]:
    pairs = [
        (label, "none" if policy.get(key) is None else str(policy.get(key)))
        for key, label in POLICY_LIMITS
    ]
    for key, label in (("forbidden_conf", "forbidden conf"), ("allowed_schemes", "schemes")):
        value = policy.get(key)
        pairs.append((label, ", ".join(str(v) for v in value) if value else "(none)"))
    exempt = policy.get("admins_exempt")
    pairs.append(("admins exempt", yes_no(exempt) if isinstance(exempt, bool) else text(exempt)))
    return pairs
