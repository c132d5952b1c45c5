"""ASGI middleware: request size limits, security headers, trusted proxy headers, JSON-only
bodies on the JSON APIs, and request timing with request ids."""

from __future__ import annotations

import ipaddress
import json
import logging
import time
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chidori.api.errors import error_body
from chidori.domain.errors import FieldError
from chidori.observe.logs import request_context, request_id_from
from chidori.observe.metrics import UNMATCHED_ROUTE, Metrics

log = logging.getLogger(__name__)


class BodyTooLarge(Exception):
    pass


class RequestSizeLimit:
    """Refuse bodies larger than `limit` bytes with 413 (`upload_limit` under `upload_prefix`),
    by Content-Length when given and by counting otherwise."""

    def __init__(self, app: ASGIApp, limit: int, upload_limit: int, upload_prefix: str) -> None:
        self.app = app
        self.limit = limit
        self.upload_limit = upload_limit
        self.upload_prefix = upload_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        limit = self.upload_limit if path.startswith(self.upload_prefix) else self.limit
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > limit or declared < 0:
                    await _refuse(send, limit)
                    return
        received = 0
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not response_started:
                await _refuse(send, limit)


async def _refuse(send: Send, limit: int) -> None:
    body = json.dumps(
        error_body("payload_too_large", f"request body larger than {limit} bytes")
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
# Pages are served by Chidori itself; nothing is loaded from elsewhere.
CONTENT_SECURITY_POLICY = (
    b"default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    b"frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)


class SecurityHeaders:
    def __init__(self, app: ASGIApp, exempt_prefixes: tuple[str, ...] = ()) -> None:
        self.app = app
        self.exempt_prefixes = exempt_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        with_csp = not path.startswith(self.exempt_prefixes)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += SECURITY_HEADERS
                if with_csp:
                    headers.append((b"content-security-policy", CONTENT_SECURITY_POLICY))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


# Where the proxy's own address is kept once a trusted proxy's headers have been applied.
PROXY_PEER = "chidori.proxy_peer"


class TrustedProxyHeaders:
    """Behind a trusted reverse proxy only: the client's address from `X-Forwarded-For` and
    the scheme from `X-Forwarded-Proto`, and the proxy's own address kept in
    `scope[PROXY_PEER]` (which is what lets its identity header be read). From anyone else
    these headers are ignored: uvicorn's own handling is off, because it trusted every local
    process, drivers included."""

    def __init__(self, app: ASGIApp, trusts: Callable[[str], bool]) -> None:
        self.app = app
        self.trusts = trusts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        if scope["type"] != "http" or not client or not self.trusts(client[0]):
            await self.app(scope, receive, send)
            return
        headers = _header_values(scope)
        forwarded = forwarded_client(headers.get(b"x-forwarded-for", []), self.trusts)
        scope = {**scope, PROXY_PEER: client[0]}
        if forwarded is not None:
            scope["client"] = (forwarded, 0)
        scheme = headers.get(b"x-forwarded-proto", [b""])[-1].decode("latin-1").strip().lower()
        if scheme in ("http", "https"):
            scope["scheme"] = scheme
        await self.app(scope, receive, send)


def _header_values(scope: Scope) -> dict[bytes, list[bytes]]:
    found: dict[bytes, list[bytes]] = {}
    for name, value in scope.get("headers", []):
        found.setdefault(name, []).append(value)
    return found


def forwarded_client(values: list[bytes], trusts: Callable[[str], bool]) -> str | None:
    """The client an `X-Forwarded-For` chain names: the nearest address that is not itself a
    trusted proxy (each proxy appends the address it saw, so earlier entries are only as
    honest as the client). None without a usable address."""
    hops = [h.strip() for v in values for h in v.decode("latin-1").split(",") if h.strip()]
    chosen: str | None = None
    for hop in reversed(hops):
        try:
            address = str(ipaddress.ip_address(hop))
        except ValueError:
            break  # not an address: trust nothing further left
        chosen = address
        if not trusts(address):
            break
    return chosen


# Bodies browsers send cross-site without asking (an HTML form, or fetch without CORS).
FORM_MEDIA_TYPES = frozenset(
    {"text/plain", "multipart/form-data", "application/x-www-form-urlencoded"}
)


class JsonBodiesOnly:
    """Under `prefixes` (the JSON APIs, not `exempt` such as uploads), refuse a body sent as a
    form or as text with 415: those are the bodies another site can make a browser send."""

    def __init__(
        self, app: ASGIApp, prefixes: tuple[str, ...], exempt: tuple[str, ...] = ()
    ) -> None:
        self.app = app
        self.prefixes = prefixes
        self.exempt = exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self._refused(scope):
            body = json.dumps(
                error_body(
                    "unsupported_media_type",
                    "send the body as JSON (Content-Type: application/json)",
                    [FieldError("content-type", "must be application/json")],
                )
            ).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 415,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)

    def _refused(self, scope: Scope) -> bool:
        path: str = scope.get("path", "")
        if not path.startswith(self.prefixes) or path.startswith(self.exempt):
            return False
        for name, value in scope.get("headers", []):
            if name == b"content-type":
                return media_type(value.decode("latin-1")) in FORM_MEDIA_TYPES
        return False


def media_type(content_type: str) -> str:
    """`text/plain` of `Text/Plain; charset=utf-8`."""
    return content_type.split(";", 1)[0].strip().lower()


class RequestObserver:
    """Times every request into the metrics, by route template (the router leaves the matched
    route in the scope; `lane_paths`, served ahead of routing, count as themselves; any other
    path no route matched counts as `unmatched`), and gives each request its id: the client's
    `X-Request-ID` when sane, else a new one, in the logs' context and echoed in the
    response."""

    def __init__(self, app: ASGIApp, metrics: Metrics, lane_paths: frozenset[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.lane_paths = lane_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        header = None
        for name, value in scope.get("headers", []):
            if name == b"x-request-id":
                header = value.decode("latin-1")
                break
        request_id = request_id_from(header)
        echoed = (b"x-request-id", request_id.encode())
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", []), echoed]}
            await send(message)

        with request_context(request_id):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                seconds = time.perf_counter() - started
                route = self._route(scope)
                self.metrics.observe_request(route, scope.get("method", ""), status, seconds)
                if status >= 500:  # the request id ties this line to the client's report
                    log.warning(
                        "%s %s answered %d in %.0f ms",
                        scope.get("method", ""),
                        route,
                        status,
                        seconds * 1000,
                    )

    def _route(self, scope: Scope) -> str:
        route = scope.get("route")
        path = getattr(route, "path", None)
        if isinstance(path, str):
            return path
        raw: str = scope.get("path", "")
        return raw if raw in self.lane_paths else UNMATCHED_ROUTE
