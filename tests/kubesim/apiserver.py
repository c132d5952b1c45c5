"""A fake Kubernetes API server at the HTTP boundary, for tests: a test double, not Kubernetes.

Built from the documented wire format (https://kubernetes.io/docs/reference/using-api/api-concepts/
and the API reference): JSON over plain HTTP/1.1 on 127.0.0.1 (uvicorn + Starlette in a
background thread), paths `/api/v1/[namespaces/NS/]RESOURCE[/NAME[/SUBRESOURCE]]` (and
`/api/v1/RESOURCE` across namespaces), errors as `Status` objects (kind Status, status
Failure, reason, code, message, details).

Served: `/version`, `/healthz` `/livez` `/readyz`, discovery (`/api`, `/api/v1` with verbs,
short names and subresources, `/apis` with no groups; a request for aggregated discovery gets
the plain documents, which clients accept as the legacy form); the core/v1 resources of
`resources.py` (pods with `status`, `log`, `binding`; nodes and namespaces with `status`;
serviceaccounts with `token`, i.e. TokenRequest; configmaps, secrets, services, PVCs, events);
list with `labelSelector`, `fieldSelector`, `limit` + `continue`; server-side Table printing
for `kubectl get`; watch (`watch=1|true` or the legacy `/watch/` prefix) with
`resourceVersion` (see `store.Store.subscribe`), `allowWatchBookmarks` (a BOOKMARK every
`bookmark_interval` seconds), `sendInitialEvents`, `timeoutSeconds`, over a chunked HTTP
stream of newline-delimited JSON events or over a WebSocket upgrade of the same URL (one text
frame per event, the first offered subprotocol accepted, as the real server does for JSON);
a too old resourceVersion answers 200 with one ERROR event holding a 410 Expired Status;
POST / PUT / PATCH (merge, strategic merge, JSON patch, and apply-patch+yaml approximated as
a create-or-strategic-merge without field ownership) / DELETE with DeleteOptions (body or
query) / deletecollection; pod logs from the kubelet's provider (`tailLines`, `limitBytes`,
`follow`). With `token=...`, requests need `Authorization: Bearer` with that token or one
issued by TokenRequest (401 otherwise); there is no authorization (every caller may do
everything). `websocket_watches=False` refuses WebSocket watches with 503 (clients fall back
to the HTTP stream). Every answered request is recorded in `requests` (method, path, query,
status, transport, user agent, start time), to see what a client called.

Not done: scheduling and anything else a controller or kubelet does (see `scheduler.py` and
`kubelet.py`), networking (no Service routing, endpoints or DNS), admission (no quotas, limit
ranges, pod security, service account token volumes), RBAC, TLS, protobuf (415/406), API
groups other than core/v1 (no apps/v1, no events.k8s.io, no CRDs), OpenAPI (`/openapi/*` is
404), exec / attach / port-forward, `dryRun` (refused with 400 rather than ignored), schema
validation (unknown fields are kept, `fieldValidation` is ignored, immutable fields such as
most of a pod's spec may be changed), watch caching semantics beyond the kept history, and
any timing of a real cluster.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import Message, Receive, Scope, Send

from tests.kubesim import resources
from tests.kubesim.errors import ApiError, bad_request
from tests.kubesim.objects import PATCH_TYPES, Obj
from tests.kubesim.resources import Resource
from tests.kubesim.routing import (
    METHOD_NOT_ALLOWED,
    RequestRecord,
    Target,
    allowed,
    dumps,
    parse_path,
    verb_of,
)
from tests.kubesim.streams import StreamingApi

_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


class FakeKubernetes(StreamingApi):
    """The fake API server: `start()` (or `with`), then point clients at `url`.

    Its in-process API (create / get / try_get / list / replace / patch / mutate /
    update_status / delete / delete_collection / watch / subscribe / wait_for / wait_deleted /
    compact, add_node / set_node_condition / set_node_taints / set_node_unschedulable,
    add_event / events_for, bind_pod, issue_token / token_claims, add_log_provider / pod_log)
    is that of `objects.ObjectStore`, `store.Store` and `cluster.Cluster`; HTTP requests go
    through the same code. Resources are named by plural, singular, kind or short name."""

    def __init__(
        self,
        *,
        token: str | None = None,
        bookmark_interval: float = 30.0,
        watch_timeout: float = 1800.0,
        websocket_watches: bool = True,
        history: int = 10000,
        graceful_pod_deletion: bool = True,
    ) -> None:
        super().__init__(history=history, graceful_pod_deletion=graceful_pod_deletion)
        self.token = token
        self.bookmark_interval = bookmark_interval
        self.watch_timeout = watch_timeout
        self.websocket_watches = websocket_watches
        self.requests: list[RequestRecord] = []
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        app = Starlette(
            routes=[
                Route("/{path:path}", self._http, methods=_METHODS),
                WebSocketRoute("/{path:path}", self._websocket),
            ]
        )
        self._app = app

    # ---- lifecycle ----

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeKubernetes:
        config = uvicorn.Config(
            self._asgi,
            host="127.0.0.1",
            port=0,
            http="h11",
            ws="websockets-sansio",
            lifespan="off",
            interface="asgi3",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, name="kubesim-apiserver", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the fake API server did not start")
            time.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        self.close_watches()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> FakeKubernetes:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def write_kubeconfig(self, path: Path, namespace: str = "default") -> Path:
        """A kubeconfig naming this server (and its token, if any) as the current context."""
        user: Obj = {"token": self.token} if self.token else {}
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "kubesim", "cluster": {"server": self.url}}],
            "users": [{"name": "kubesim", "user": user}],
            "contexts": [
                {
                    "name": "kubesim",
                    "context": {"cluster": "kubesim", "user": "kubesim", "namespace": namespace},
                }
            ],
            "current-context": "kubesim",
        }
        path.write_text(yaml.safe_dump(config))
        return path

    # ---- the ASGI boundary ----

    async def _asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self._app(scope, receive, send)
        status, started = {"code": 0}, time.time()

        async def recording_send(message: Message) -> None:
            if message["type"] in ("http.response.start", "websocket.http.response.start"):
                status["code"] = int(message["status"])
            elif message["type"] == "websocket.accept":
                status["code"] = 101
            await send(message)

        try:
            await self._app(scope, receive, recording_send)
        finally:
            headers = dict(scope.get("headers") or [])
            self.requests.append(
                RequestRecord(
                    scope.get("method", "GET"),
                    scope["path"],
                    scope.get("query_string", b"").decode(),
                    status["code"],
                    scope["type"],
                    headers.get(b"user-agent", b"").decode(),
                    started,
                )
            )

    async def _http(self, request: Request) -> Response:
        try:
            path = request.url.path.rstrip("/") or "/"
            if path in ("/healthz", "/livez", "/readyz"):
                return PlainTextResponse("ok")
            self._authenticate(request, [])
            discovery = {
                "/version": lambda: resources.SERVER_VERSION,
                "/api": lambda: resources.api_versions(f"127.0.0.1:{self.port}"),
                "/api/v1": resources.api_resource_list,
                "/apis": resources.api_group_list,
            }
            if path in discovery:
                return JSONResponse(discovery[path]())
            target = parse_path(path)
            query = request.query_params
            if "dryRun" in query:
                raise bad_request("dryRun is not supported by the kubesim fake API server")
            content_type = request.headers.get("content-type", "").split(";")[0].strip()
            if "protobuf" in content_type:
                raise ApiError(
                    415,
                    "UnsupportedMediaType",
                    "the body of the request was in an "
                    "unknown format - accepted media types include: application/json",
                )
            watch = query.get("watch") in ("true", "1") or target.watch_prefix
            verb = verb_of(request.method, target, watch)
            if not allowed(target, verb):
                raise METHOD_NOT_ALLOWED
            body = await request.body()
            return await self._dispatch(request, target, verb, body, content_type)
        except ApiError as exc:
            return JSONResponse(exc.status(), status_code=exc.code)

    def _body(self, raw: bytes, content_type: str = "") -> Any:
        if not raw.strip():
            return {}
        try:
            if content_type == PATCH_TYPES["apply"]:
                return yaml.safe_load(raw)
            return json.loads(raw)
        except (ValueError, yaml.YAMLError) as exc:
            raise bad_request(f"the request body is not valid JSON: {exc}") from exc

    async def _dispatch(
        self, request: Request, t: Target, verb: str, raw: bytes, content_type: str
    ) -> Response:
        r, ns, query = t.resource, t.namespace, request.query_params
        as_table = "as=Table" in request.headers.get("accept", "")
        if verb == "watch":
            return self._watch_http(t, dict(query))
        if verb == "list":
            return self._list(t, dict(query), as_table)
        if t.subresource == "log":
            return await self._log(t, dict(query))
        if t.subresource == "binding":
            target = self._body(raw).get("target") or {}
            self.bind_pod(str(t.name), str(target.get("name", "")), ns)
            done = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}
            return JSONResponse(dict(done, code=201), status_code=201)
        if t.subresource == "token":
            spec = self._body(raw).get("spec") or {}
            answer = self.issue_token(
                ns or "default",
                str(t.name),
                spec.get("audiences"),
                int(spec.get("expirationSeconds") or 3600),
                spec.get("boundObjectRef"),
            )
            return JSONResponse(answer, status_code=201)
        if verb == "create":
            body = self._body(raw)
            self._check_kind(r, body)
            return JSONResponse(self.create(r, body, ns), status_code=201)
        if verb == "get":
            obj = self.get(r, str(t.name), ns)
            if as_table:
                full = query.get("includeObject") == "Object"
                return JSONResponse(
                    resources.table(r, [obj], obj["metadata"]["resourceVersion"], full)
                )
            return JSONResponse(obj)
        if verb == "update":
            body = self._body(raw)
            self._check_kind(r, body)
            if (body.get("metadata") or {}).get("name") not in (None, t.name):
                raise bad_request(
                    f"the name of the object ({body['metadata']['name']}) does not match the name "
                    f"on the URL ({t.name})"
                )
            body.setdefault("metadata", {})["name"] = t.name
            return JSONResponse(self.replace(r, body, ns, subresource=t.subresource))
        if verb == "patch":
            return self._patch(t, raw, content_type, dict(query))
        options = self._body(raw)
        if "gracePeriodSeconds" in query:
            options["gracePeriodSeconds"] = int(query["gracePeriodSeconds"])
        if "propagationPolicy" in query:
            options["propagationPolicy"] = query["propagationPolicy"]
        if query.get("orphanDependents") == "true" or options.get("orphanDependents") is True:
            options.setdefault("propagationPolicy", "Orphan")
        grace = options.get("gracePeriodSeconds")
        policy = options.get("propagationPolicy")
        if verb == "delete":
            deleted = self.delete(
                r,
                str(t.name),
                ns,
                propagation=policy,
                grace_period=None if grace is None else int(grace),
                preconditions=options.get("preconditions"),
            )
            return JSONResponse(deleted)
        items = self.delete_collection(
            r,
            ns,
            label_selector=query.get("labelSelector", ""),
            field_selector=query.get("fieldSelector", ""),
            propagation=policy,
            grace_period=None if grace is None else int(grace),
        )
        listing: Obj = {"kind": r.list_kind, "apiVersion": r.api_version}
        listing["metadata"] = {"resourceVersion": self.resource_version}
        listing["items"] = [self._bare(o) for o in items]
        return JSONResponse(listing)

    @staticmethod
    def _check_kind(r: Resource, body: Any) -> None:
        if not isinstance(body, dict):
            raise bad_request("the request body must be an object")
        if body.get("kind") not in (None, r.kind) or body.get("apiVersion") not in (
            None,
            r.api_version,
        ):
            raise bad_request(
                f"the API version in the data ({body.get('apiVersion')}) or kind "
                f"({body.get('kind')}) does not match the expected ({r.api_version}, {r.kind})"
            )

    @staticmethod
    def _bare(obj: Obj) -> Obj:
        return {k: v for k, v in obj.items() if k not in ("kind", "apiVersion")}

    def _patch(self, t: Target, raw: bytes, content_type: str, query: dict[str, str]) -> Response:
        if content_type not in PATCH_TYPES.values():
            raise ApiError(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format - "
                f"accepted media types include: {', '.join(sorted(PATCH_TYPES.values()))}",
            )
        body = self._body(raw, content_type)
        if content_type == PATCH_TYPES["apply"]:
            if not query.get("fieldManager"):
                raise ApiError(
                    422,
                    "Invalid",
                    'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required '
                    "value: is required for apply patch",
                )
            if self.try_get(t.resource, str(t.name), t.namespace) is None:
                self._check_kind(t.resource, body)
                body.setdefault("metadata", {})["name"] = t.name
                return JSONResponse(self.create(t.resource, body, t.namespace), status_code=201)
        patched = self.patch(
            t.resource, str(t.name), body, content_type, t.namespace, subresource=t.subresource
        )
        return JSONResponse(patched)

    def _list(self, t: Target, query: dict[str, str], as_table: bool) -> Response:
        items, rv = self.list_at(
            t.resource, t.namespace, query.get("labelSelector", ""), query.get("fieldSelector", "")
        )
        meta: Obj = {"resourceVersion": rv}
        start = 0
        if query.get("continue"):
            try:
                start = int(json.loads(base64.b64decode(query["continue"]))["start"])
            except (ValueError, KeyError) as exc:
                raise bad_request("continue key is not valid") from exc
        limit = int(query.get("limit") or 0)
        if limit > 0 and start + limit < len(items):
            token = {"start": start + limit, "rv": rv}
            meta["continue"] = base64.b64encode(dumps(token).encode()).decode()
            meta["remainingItemCount"] = len(items) - start - limit
            items = items[start : start + limit]
        else:
            items = items[start:]
        if as_table:
            full = query.get("includeObject") == "Object"
            return JSONResponse(resources.table(t.resource, items, rv, full) | {"metadata": meta})
        listing: Obj = {"kind": t.resource.list_kind, "apiVersion": t.resource.api_version}
        listing.update(metadata=meta, items=[self._bare(o) for o in items])
        return JSONResponse(listing)
