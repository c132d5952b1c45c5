"""A small typed HTTP client for the Chidori REST API (``/api/v1``).

HTTP error answers become :class:`ApiError`; failures to talk to the server at
all become :class:`ServerUnreachable`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

JsonObject = dict[str, Any]

API_PREFIX = "/api/v1"


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str


class ApiError(Exception):
    """The server answered with an error status (or an unreadable body)."""

    def __init__(
        self, status: int, code: str, message: str, fields: Sequence[FieldError] = ()
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.fields: list[FieldError] = list(fields)


class ServerUnreachable(Exception):
    """The server could not be reached (refused, DNS, timeout, dropped connection)."""

    def __init__(self, url: str, detail: str) -> None:
        super().__init__(f"cannot reach {url}: {detail}")
        self.url = url
        self.detail = detail


class StreamInterrupted(ServerUnreachable):
    """A streaming response broke off after it had started."""


@dataclass(frozen=True)
class LogChunk:
    text: str
    next_offset: int | None
    size: int | None = None  # the whole log's size when read (answers are windows of it)


@dataclass
class JobQuery:
    """Filters of ``GET /jobs``; ``None``/empty means not given."""

    states: list[str] = field(default_factory=list)
    schema: str | None = None
    table: str | None = None
    queue: str | None = None
    cluster: str | None = None
    user: str | None = None
    labels: list[str] = field(default_factory=list)
    q: str | None = None
    created_after: str | None = None
    created_before: str | None = None
    limit: int | None = None

    def params(self, cursor: str | None = None) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = [("state", s) for s in self.states]
        for key in ("schema", "table", "queue", "cluster", "user"):
            value = getattr(self, key)
            if value is not None:
                out.append((key, str(value)))
        out.extend(("label", lab) for lab in self.labels)
        for key, value in (
            ("q", self.q),
            ("created_after", self.created_after),
            ("created_before", self.created_before),
            ("limit", self.limit),
            ("cursor", cursor),
        ):
            if value is not None:
                out.append((key, str(value)))
        return out


def _error_from_response(response: httpx.Response) -> ApiError:
    status = response.status_code
    code = f"http_{status}"
    message = response.reason_phrase or f"HTTP {status}"
    fields: list[FieldError] = []
    try:
        body: Any = response.json()
    except (ValueError, UnicodeDecodeError):
        text = response.text.strip()
        if text:
            message = f"{message}: {text.splitlines()[0][:200]}"
        return ApiError(status, code, message)
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        code = str(error.get("code") or code)
        message = str(error.get("message") or message)
        for item in error.get("fields") or []:
            if isinstance(item, dict):
                fields.append(FieldError(str(item.get("field", "")), str(item.get("message", ""))))
    elif isinstance(body, dict) and "detail" in body:  # FastAPI's default error shape
        detail = body["detail"]
        if isinstance(detail, str):
            message = detail
        elif isinstance(detail, list):
            message = "invalid request"
            for item in detail:
                if isinstance(item, dict):
                    loc = item.get("loc") or []
                    name = ".".join(str(p) for p in loc if p not in ("body", "query", "path"))
                    fields.append(FieldError(name, str(item.get("msg", ""))))
    return ApiError(status, code, message, fields)


class ChidoriClient:
    """One method per endpoint of the Chidori API; JSON in, JSON out."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        headers = {"Accept": "application/json", "User-Agent": "chidori-cli"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(
            base_url=self.base_url + API_PREFIX,
            headers=headers,
            timeout=timeout,
            transport=transport,
        )

    # -- plumbing --------------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ChidoriClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Sequence[tuple[str, str]] | None = None,
        json_body: Any = None,
        files: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        try:
            response = self._http.request(
                method,
                path,
                params=list(params) if params else None,
                json=json_body,
                files=files,
                headers=dict(headers) if headers else None,
                timeout=self.timeout if timeout is None else timeout,
            )
        except httpx.TransportError as exc:
            raise ServerUnreachable(self.base_url, _describe(exc)) from exc
        if response.status_code >= 400:
            raise _error_from_response(response)
        return response

    def _json(self, response: httpx.Response) -> JsonObject:
        try:
            body = response.json()
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(
                response.status_code, "invalid_response", "the server sent a non-JSON answer"
            ) from exc
        if not isinstance(body, dict):
            raise ApiError(
                response.status_code, "invalid_response", "the server sent a non-object answer"
            )
        return body

    # -- endpoints -------------------------------------------------------------------------

    def upload(self, path: Path) -> JsonObject:
        """``POST /uploads``: returns ``{"uri", "sha256", "size"}``."""
        with path.open("rb") as fh:
            files = {"file": (path.name, fh, "application/octet-stream")}
            response = self._request(
                "POST", "/uploads", files=files, timeout=max(self.timeout, 300)
            )
        return self._json(response)

    def submit_job(self, spec: Mapping[str, Any], idempotency_key: str | None = None) -> JsonObject:
        """``POST /jobs``: returns the new (or, for a repeated idempotency key, first) job."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return self._json(self._request("POST", "/jobs", json_body=dict(spec), headers=headers))

    def list_jobs(self, query: JobQuery, cursor: str | None = None) -> JsonObject:
        """``GET /jobs``: returns ``{"items": [...], "next_cursor": ...}``."""
        return self._json(self._request("GET", "/jobs", params=query.params(cursor)))

    def get_job(self, job_id: int) -> JsonObject:
        return self._json(self._request("GET", f"/jobs/{job_id}"))

    def wait_job(self, job_id: int, state: str, timeout: float = 30) -> JsonObject:
        """``GET /jobs/{id}/wait``: the job once its state is not ``state`` (or at timeout)."""
        params = [("state", state), ("timeout", _num(timeout))]
        response = self._request(
            "GET", f"/jobs/{job_id}/wait", params=params, timeout=timeout + max(self.timeout, 10)
        )
        return self._json(response)

    def cancel_job(self, job_id: int) -> JsonObject:
        return self._json(self._request("DELETE", f"/jobs/{job_id}"))

    def job_events(self, job_id: int) -> list[JsonObject]:
        items = self._json(self._request("GET", f"/jobs/{job_id}/events")).get("items") or []
        return [item for item in items if isinstance(item, dict)]

    def job_logs(
        self,
        job_id: int,
        *,
        attempt: int | None = None,
        tail: int | None = None,
        offset: int | None = None,
    ) -> LogChunk:
        """``GET /jobs/{id}/logs`` without follow: the text and the next byte offset."""
        params = _log_params(attempt, tail, offset, follow=False)
        response = self._request("GET", f"/jobs/{job_id}/logs", params=params)
        header = response.headers.get("X-Log-Offset")
        next_offset = int(header) if header and header.strip().isdigit() else None
        size_header = response.headers.get("X-Log-Size")
        size = int(size_header) if size_header and size_header.strip().isdigit() else None
        return LogChunk(response.content.decode("utf-8", errors="replace"), next_offset, size)

    def follow_logs(
        self,
        job_id: int,
        *,
        attempt: int | None = None,
        tail: int | None = None,
        offset: int | None = None,
    ) -> Iterator[bytes]:
        """``GET /jobs/{id}/logs?follow=true``: yields raw chunks until the server ends it."""
        params = _log_params(attempt, tail, offset, follow=True)
        timeout = httpx.Timeout(self.timeout, read=None)
        started = False
        try:
            with self._http.stream(
                "GET", f"/jobs/{job_id}/logs", params=tuple(params), timeout=timeout
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _error_from_response(response)
                started = True
                yield from response.iter_bytes()
        except httpx.TransportError as exc:
            error = StreamInterrupted if started else ServerUnreachable
            raise error(self.base_url, _describe(exc)) from exc

    def dataset_history(
        self, schema: str, table: str, limit: int | None = None, cursor: str | None = None
    ) -> JsonObject:
        """``GET /history``: ``{"schema", "table", "items": runs newest first, "next_cursor"}``."""
        params = [("schema", schema), ("table", table)]
        if limit is not None:
            params.append(("limit", str(limit)))
        if cursor is not None:
            params.append(("cursor", cursor))
        return self._json(self._request("GET", "/history", params=params))

    # -- identity and admin ----------------------------------------------------------------

    def whoami(self) -> JsonObject:
        """``GET /whoami``: ``{"name", "role", "team"}`` of the token's user."""
        return self._json(self._request("GET", "/whoami"))

    def list_users(self) -> list[JsonObject]:
        """``GET /admin/users``: every user (admins only)."""
        return _items(self._json(self._request("GET", "/admin/users")))

    def create_user(
        self,
        name: str,
        *,
        role: str | None = None,
        team: str | None = None,
        clusters: Sequence[str] | None = None,
        queues: Sequence[str] | None = None,
    ) -> JsonObject:
        """``POST /admin/users``: the new user. ``None`` leaves a field to the server's
        default (role ``user``, no team, all clusters and queues)."""
        body: JsonObject = {"name": name}
        for key, value in (("role", role), ("team", team)):
            if value is not None:
                body[key] = value
        for key, names in (("clusters", clusters), ("queues", queues)):
            if names is not None:
                body[key] = list(names)
        return self._json(self._request("POST", "/admin/users", json_body=body))

    def update_user(self, name: str, changes: Mapping[str, Any]) -> JsonObject:
        """``PATCH /admin/users/{name}``: only the keys in ``changes`` change (a ``None``
        ``clusters``/``queues`` means all); returns the user."""
        path = f"/admin/users/{quote(name, safe='')}"
        return self._json(self._request("PATCH", path, json_body=dict(changes)))

    def list_environments(self) -> list[JsonObject]:
        """``GET /environments``: built Python environments, least recently used first."""
        return _items(self._json(self._request("GET", "/environments")))

    def prune_environments(self, budget: str | None) -> JsonObject:
        """``POST /admin/environments/prune``: returns ``{"removed": [keys]}``."""
        body = {"budget": budget}
        return self._json(self._request("POST", "/admin/environments/prune", json_body=body))

    def list_base_environments(self) -> list[JsonObject]:
        """``GET /environments/base``: the base environments jobs may name."""
        return _items(self._json(self._request("GET", "/environments/base")))

    def create_base_environment(self, name: str, requirements: list[str]) -> JsonObject:
        """``POST /admin/environments/base``: resolves and builds it (may take minutes)."""
        body = {"name": name, "requirements": requirements}
        response = self._request(
            "POST", "/admin/environments/base", json_body=body, timeout=max(self.timeout, 900)
        )
        return self._json(response)

    def delete_base_environment(self, name: str) -> None:
        """``DELETE /admin/environments/base/{name}``."""
        self._request("DELETE", f"/admin/environments/base/{quote(name, safe='')}")

    def job_environment(self, job_id: int) -> JsonObject:
        """``GET /jobs/{id}/environment``: its state, resolved packages and build log."""
        return self._json(self._request("GET", f"/jobs/{job_id}/environment"))

    def list_tokens(self, user: str | None = None) -> list[JsonObject]:
        """``GET /tokens``: your tokens (admins: everyone's, or ``user``'s). No secrets."""
        params = [("user", user)] if user is not None else None
        return _items(self._json(self._request("GET", "/tokens", params=params)))

    def create_token(
        self,
        *,
        name: str | None = None,
        user: str | None = None,
        expires_in: str | None = None,
    ) -> JsonObject:
        """``POST /tokens``: the token's record plus ``"token"``, the secret (shown once)."""
        body: JsonObject = {}
        for key, value in (("name", name), ("user", user), ("expires_in", expires_in)):
            if value is not None:
                body[key] = value
        return self._json(self._request("POST", "/tokens", json_body=body))

    def revoke_token(self, token_id: int) -> JsonObject:
        """``DELETE /tokens/{id}``: the revoked token."""
        return self._json(self._request("DELETE", f"/tokens/{token_id}"))

    def get_policy(self) -> JsonObject:
        """``GET /admin/policy``: the whole policy document."""
        return self._json(self._request("GET", "/admin/policy"))

    def put_policy(self, policy: Mapping[str, Any]) -> JsonObject:
        """``PUT /admin/policy``: replaces the whole policy; returns it as stored."""
        return self._json(self._request("PUT", "/admin/policy", json_body=dict(policy)))

    # -- admission -------------------------------------------------------------------------

    def capacity(self) -> JsonObject:
        """``GET /capacity``: limits, reserved and free, globally and per cluster; waiting."""
        return self._json(self._request("GET", "/capacity"))

    def list_queues(self) -> list[JsonObject]:
        """``GET /queues``: every queue with its rank, weight, quota, depth and running jobs."""
        return _items(self._json(self._request("GET", "/queues")))

    def put_queue(self, name: str, queue: Mapping[str, Any]) -> JsonObject:
        """``PUT /admin/queues/{name}``: create or replace a queue; returns it as stored."""
        path = f"/admin/queues/{quote(name, safe='')}"
        return self._json(self._request("PUT", path, json_body=dict(queue)))

    def get_limits(self) -> JsonObject:
        """``GET /admin/limits``: the global and per-cluster admission limits."""
        return self._json(self._request("GET", "/admin/limits"))

    def put_limits(self, limits: Mapping[str, Any]) -> JsonObject:
        """``PUT /admin/limits``: replaces the whole limits document; returns it as stored."""
        return self._json(self._request("PUT", "/admin/limits", json_body=dict(limits)))

    def warm_pools(self) -> list[JsonObject]:
        """``GET /warm-pool``: every cluster's warm pool (size, driver shape, its drivers)."""
        return _items(self._json(self._request("GET", "/warm-pool")))

    def set_warm_size(self, cluster: str, size: int | None) -> JsonObject:
        """``PUT /admin/warm-pool/{cluster}``: warm drivers per server (``None``: back to the
        config's size); returns the cluster's pool."""
        path = f"/admin/warm-pool/{quote(cluster, safe='')}"
        return self._json(self._request("PUT", path, json_body={"size": size}))

    def audit(self, limit: int | None = None, cursor: str | None = None) -> JsonObject:
        """``GET /admin/audit``: ``{"items": [...], "next_cursor": ...}``, newest first."""
        params: list[tuple[str, str]] = []
        if limit is not None:
            params.append(("limit", str(limit)))
        if cursor is not None:
            params.append(("cursor", cursor))
        return self._json(self._request("GET", "/admin/audit", params=params))


def _items(page: JsonObject) -> list[JsonObject]:
    items = page.get("items") or []
    return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []


def _log_params(
    attempt: int | None, tail: int | None, offset: int | None, *, follow: bool
) -> list[tuple[str, str]]:
    params: list[tuple[str, str]] = []
    for key, value in (("attempt", attempt), ("tail", tail), ("offset", offset)):
        if value is not None:
            params.append((key, str(value)))
    params.append(("follow", "true" if follow else "false"))
    return params


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _describe(exc: httpx.TransportError) -> str:
    text = str(exc).strip()
    if isinstance(exc, httpx.ConnectError):
        lowered = text.lower()
        if "refused" in lowered:
            return "connection refused"
        if "name or service" in lowered or "nodename" in lowered or "getaddrinfo" in lowered:
            return "unknown host"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
