"""Request routing of the fake API server: which resource, namespace, name and subresource a
path names, which verb a method is, and whether the resource allows it (405 otherwise)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tests.kubesim.errors import ApiError
from tests.kubesim.resources import RESOURCES, Resource

_BY_PLURAL = {r.plural: r for r in RESOURCES}
BEARER_PROTOCOL = "base64url.bearer.authorization.k8s.io."
NOT_FOUND = ApiError(404, "NotFound", "the server could not find the requested resource", {})
METHOD_NOT_ALLOWED = ApiError(
    405, "MethodNotAllowed", "the server does not allow this method on the requested resource", {}
)


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


@dataclass(frozen=True)
class Target:
    """What a request path names."""

    resource: Resource
    namespace: str | None
    name: str | None
    subresource: str | None
    watch_prefix: bool = False


@dataclass(frozen=True)
class RequestRecord:
    """One request the server answered (`transport` is "http" or "websocket"; `started` is
    `time.time()` when it came in)."""

    method: str
    path: str
    query: str
    status: int
    transport: str
    user_agent: str
    started: float = 0.0


def parse_path(path: str) -> Target:
    parts = [p for p in path.split("/") if p]
    if parts[:2] != ["api", "v1"] or len(parts) < 3:
        raise NOT_FOUND
    rest, watch_prefix = parts[2:], False
    if rest[0] == "watch":
        rest, watch_prefix = rest[1:], True
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] in _BY_PLURAL:
        namespace, rest = rest[1], rest[2:]
    r = _BY_PLURAL.get(rest[0]) if rest else None
    if r is None or len(rest) > 3 or (namespace is not None and not r.namespaced):
        raise NOT_FOUND
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else None
    if sub is not None and sub not in r.subresources:
        raise NOT_FOUND
    return Target(r, namespace, name, sub, watch_prefix)


def verb_of(method: str, target: Target, watch: bool) -> str:
    if target.name is None:
        return {"GET": "watch" if watch else "list", "POST": "create"}.get(
            method, "deletecollection" if method == "DELETE" else "?"
        )
    return {"GET": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(
        method, "create" if method == "POST" else "?"
    )


def allowed(target: Target, verb: str) -> bool:
    if target.subresource is not None:
        return verb in target.resource.subresources[target.subresource][1]
    return verb in target.resource.verbs and (target.name is None) != (
        verb in ("get", "update", "patch", "delete")
    )
