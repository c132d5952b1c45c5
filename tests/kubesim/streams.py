"""The streaming side of the fake API server: watches over HTTP and WebSocket, pod logs.

A watch subscribes to the store with a delivery function that hands each event to the
server's event loop (`call_soon_threadsafe`), then streams: over HTTP as newline-delimited
JSON in a chunked response, over WebSocket as one text frame per event (the first offered
subprotocol is accepted; a `base64url.bearer.authorization.k8s.io.` one carries a token, as
client-go sends it). The stream ends after `timeoutSeconds` (default `watch_timeout`), when the
client goes away, or when the server stops. With `allowWatchBookmarks=true` a BOOKMARK with
the current resourceVersion is sent after `bookmark_interval` quiet seconds. Non-watch
WebSocket upgrades (exec, attach, port-forward) are refused with 400. With
`websocket_watches=False` watch upgrades are refused with 503, the answer on which clients
such as fabric8 fall back to the HTTP stream.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.websockets import WebSocket, WebSocketDisconnect

from tests.kubesim.cluster import Cluster
from tests.kubesim.errors import ApiError, bad_request
from tests.kubesim.objects import Obj
from tests.kubesim.routing import (
    BEARER_PROTOCOL,
    METHOD_NOT_ALLOWED,
    Target,
    allowed,
    dumps,
    parse_path,
)


class StreamingApi(Cluster):
    """Authentication, watch streams and log streams; `apiserver.FakeKubernetes` routes to it."""

    token: str | None = None
    bookmark_interval: float = 30.0
    watch_timeout: float = 1800.0
    websocket_watches: bool = True

    def _authenticate(self, conn: HTTPConnection, offered: list[str]) -> None:
        if self.token is None:
            return
        header = conn.headers.get("authorization", "")
        token = header[7:] if header.lower().startswith("bearer ") else ""
        for protocol in offered:
            if protocol.startswith(BEARER_PROTOCOL):
                encoded = protocol[len(BEARER_PROTOCOL) :]
                token = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
        if token != self.token and self.token_claims(token) is None:
            raise ApiError(401, "Unauthorized", "Unauthorized")

    # ---- watches ----

    def _open_watch(
        self, t: Target, query: dict[str, str]
    ) -> tuple[asyncio.Queue[Obj | None], Any]:
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[Obj | None] = asyncio.Queue()

        def deliver(event: Obj | None) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is gone: the server stopped
                loop.call_soon_threadsafe(events.put_nowait, event)

        fields = query.get("fieldSelector", "")
        if t.name is not None:
            fields = ",".join(f for f in (fields, f"metadata.name={t.name}") if f)
        initial = query.get("sendInitialEvents") == "true"
        rv = query.get("resourceVersion")
        try:
            sub = self.subscribe(
                t.resource,
                t.namespace,
                deliver,
                label_selector=query.get("labelSelector", ""),
                field_selector=fields,
                resource_version=None if initial else rv,
                initial_events_end=initial and query.get("allowWatchBookmarks") == "true",
            )
        except ApiError as exc:
            if exc.code != 410:
                raise
            events.put_nowait({"type": "ERROR", "object": exc.status()})
            events.put_nowait(None)
            sub = None
        return events, sub

    async def _watch_events(
        self, t: Target, query: dict[str, str], events: asyncio.Queue[Obj | None], sub: Any
    ) -> AsyncGenerator[str, None]:
        loop = asyncio.get_running_loop()
        timeout = float(query.get("timeoutSeconds") or self.watch_timeout)
        deadline = loop.time() + timeout
        bookmarks = query.get("allowWatchBookmarks") == "true"
        try:
            while (remaining := deadline - loop.time()) > 0:
                wait = min(remaining, self.bookmark_interval) if bookmarks else remaining
                try:
                    event = await asyncio.wait_for(events.get(), wait)
                except TimeoutError:
                    if bookmarks and loop.time() < deadline:
                        mark = {"resourceVersion": self.resource_version}
                        obj = {"kind": t.resource.kind, "apiVersion": t.resource.api_version}
                        yield dumps({"type": "BOOKMARK", "object": dict(obj, metadata=mark)})
                    continue
                if event is None:
                    break
                yield dumps(event)
        finally:
            if sub is not None:
                self.unsubscribe(sub)

    def _watch_http(self, t: Target, query: dict[str, str]) -> Response:
        events, sub = self._open_watch(t, query)

        async def lines() -> AsyncIterator[bytes]:
            async for event in self._watch_events(t, query, events, sub):
                yield (event + "\n").encode()

        return StreamingResponse(lines(), media_type="application/json")

    async def _websocket(self, websocket: WebSocket) -> None:
        offered = list(websocket.scope.get("subprotocols") or [])
        query = dict(websocket.query_params)
        try:
            self._authenticate(websocket, offered)
            t = parse_path(websocket.url.path)
            watch = query.get("watch") in ("true", "1") or t.watch_prefix
            if t.subresource is not None or not watch:
                raise bad_request("kubesim serves WebSocket upgrades only for watch requests")
            if not allowed(t, "watch"):
                raise METHOD_NOT_ALLOWED
            if not self.websocket_watches:
                raise ApiError(
                    503, "ServiceUnavailable", "watches over WebSocket are switched off here"
                )
            events, sub = self._open_watch(t, query)
        except ApiError as exc:
            await websocket.send_denial_response(JSONResponse(exc.status(), status_code=exc.code))
            return
        protocols = [p for p in offered if not p.startswith(BEARER_PROTOCOL)]
        await websocket.accept(subprotocol=protocols[0] if protocols else None)

        async def read_until_closed() -> None:
            with contextlib.suppress(WebSocketDisconnect):
                while True:
                    message = await websocket.receive()
                    if message["type"] == "websocket.disconnect":
                        return

        reader = asyncio.create_task(read_until_closed())
        stream = self._watch_events(t, query, events, sub)
        try:
            async for event in stream:
                if reader.done():
                    break
                await websocket.send_text(event)
            if not reader.done():
                await websocket.close(1000)
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass
        finally:
            reader.cancel()
            await stream.aclose()

    # ---- logs ----

    async def _log(self, t: Target, query: dict[str, str]) -> Response:
        ns, name = t.namespace or "default", str(t.name)
        pod = self.get("pods", name, ns)
        containers = [c["name"] for c in pod["spec"].get("containers", [])]
        container = query.get("container") or (containers[0] if len(containers) == 1 else "")
        if not container:
            raise bad_request(
                f"a container name must be specified for pod {name}, choose one of: "
                f"[{' '.join(containers)}]"
            )
        if container not in containers:
            raise bad_request(f"container {container} is not valid for pod {name}")

        def text() -> str | None:
            found = self.pod_log(ns, name, container)
            if found is None:
                return None
            if "tailLines" in query:
                lines = found.splitlines(keepends=True)
                found = (
                    "".join(lines[-int(query["tailLines"]) :]) if int(query["tailLines"]) else ""
                )
            if "limitBytes" in query:
                found = found.encode()[: int(query["limitBytes"])].decode(errors="ignore")
            return found

        first = text()
        if first is None and pod.get("status", {}).get("phase", "Pending") == "Pending":
            raise bad_request(
                f'container "{container}" in pod "{name}" is waiting to start: ContainerCreating'
            )
        if query.get("follow") != "true":
            return PlainTextResponse(first or "")

        async def follow() -> AsyncIterator[bytes]:
            sent = 0
            while True:
                whole = (self.pod_log(ns, name, container) or "").encode()
                if len(whole) > sent:
                    yield whole[sent:]
                    sent = len(whole)
                current = self.try_get("pods", name, ns)
                if current is None or current.get("status", {}).get("phase") in (
                    "Succeeded",
                    "Failed",
                ):
                    rest = (self.pod_log(ns, name, container) or "").encode()[sent:]
                    if rest:
                        yield rest
                    return
                await asyncio.sleep(0.2)

        return StreamingResponse(follow(), media_type="text/plain")
