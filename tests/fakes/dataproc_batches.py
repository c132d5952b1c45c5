"""A fake of the Dataproc API's serverless batches at the REST transport the official client
uses (`google-cloud-dataproc`, `transport="rest"`), built from the published v1 definitions
(google/cloud/dataproc/v1/batches.proto and its HTTP rules). Not verified against the live
service.

What it does: `POST /v1/projects/P/locations/L/batches?batchId=&requestId=` (checks the
batch id's form and one batch type; the same request id answers the same operation; a batch
id already used answers 409 ALREADY_EXISTS; 429 RESOURCE_EXHAUSTED while `refuse_quota` is
set), `GET .../batches/ID` (walks each batch through a script of states, one step per read,
enums as numbers when the client asks `enum-encoding=int`, as it does), and
`POST /v1/projects/P/regions/L/operations/OP:cancel` (CANCELLING, then CANCELLED).

What it does not do: run anything, check credentials (the client sends none: anonymous),
list, delete or wait for operations, write driver output to Cloud Storage, check URIs,
runtime versions, quotas of its own, or serve any other API (clusters, jobs, templates).
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

STATE_NUMBERS = {
    "STATE_UNSPECIFIED": 0, "PENDING": 1, "RUNNING": 2, "CANCELLING": 3, "CANCELLED": 4,
    "SUCCEEDED": 5, "FAILED": 6,
}  # fmt: skip
BATCH_TYPES = ("pysparkBatch", "sparkBatch", "sparkRBatch", "sparkSqlBatch")
BATCH_ID = re.compile(r"^[a-z0-9][a-z0-9-]{2,61}[a-z0-9]$")
_BATCHES = re.compile(r"^/v1/projects/([^/]+)/locations/([^/]+)/batches(?:/([^/:]+))?$")
_CANCEL = re.compile(r"^/v1/(projects/[^/]+/regions/[^/]+/operations/[^/:]+):cancel$")


@dataclass
class FakeBatch:
    name: str
    body: dict[str, Any]
    operation: str
    script: list[str]
    step: int = 0
    message: str = ""

    @property
    def state(self) -> str:
        return self.script[min(self.step, len(self.script) - 1)]


@dataclass
class FakeDataproc:
    url: str = ""
    batches: dict[str, FakeBatch] = field(default_factory=dict)
    requests: dict[str, str] = field(default_factory=dict)  # request id -> operation
    creates: int = 0
    refuse_quota: bool = False
    scripts: list[list[str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, method: str, path: str, query: dict[str, str], body: Any) -> Any:
        numbers = "enum-encoding=int" in query.get("$alt", "")
        with self.lock:
            if method == "POST" and (found := _CANCEL.match(path)):
                return self._cancel(found.group(1))
            found = _BATCHES.match(path)
            if found and method == "POST" and found.group(3) is None:
                return self._create(found.group(1), found.group(2), query, body)
            if found and method == "GET" and found.group(3):
                return self._get(path[len("/v1/") :], numbers)
        return 404, _error(404, "NOT_FOUND", f"no API {method} {path}")

    def _create(self, project: str, region: str, query: dict[str, str], body: Any) -> Any:
        self.creates += 1
        if self.refuse_quota:
            return 429, _error(429, "RESOURCE_EXHAUSTED", "Insufficient 'CPUS' quota.")
        request_id = query.get("requestId", "")
        if request_id and request_id in self.requests:
            return 200, {"name": self.requests[request_id], "done": False}
        batch_id = query.get("batchId", "")
        if not BATCH_ID.match(batch_id):
            return 400, _error(400, "INVALID_ARGUMENT", f"batchId {batch_id!r} is not valid")
        if sum(1 for kind in BATCH_TYPES if kind in body) != 1:
            return 400, _error(400, "INVALID_ARGUMENT", "exactly one batch type is required")
        name = f"projects/{project}/locations/{region}/batches/{batch_id}"
        if name in self.batches:
            return 409, _error(409, "ALREADY_EXISTS", f"Already exists: {name}")
        operation = f"projects/{project}/regions/{region}/operations/{uuid.uuid4()}"
        script = self.scripts.pop(0) if self.scripts else ["PENDING", "RUNNING", "SUCCEEDED"]
        self.batches[name] = FakeBatch(name, body, operation, script)
        if request_id:
            self.requests[request_id] = operation
        return 200, {"name": operation, "done": False}

    def _get(self, name: str, numbers: bool) -> Any:
        batch = self.batches.get(name)
        if batch is None:
            return 404, _error(404, "NOT_FOUND", f"Not found: {name}")
        state = batch.state
        batch.step += 1
        return 200, {
            "name": batch.name,
            "uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, batch.name)),
            "state": STATE_NUMBERS[state] if numbers else state,
            "stateMessage": batch.message,
            "operation": batch.operation,
            "runtimeInfo": {"outputUri": f"gs://dataproc-staging/{batch.name}/driveroutput"},
            **{k: v for k, v in batch.body.items() if k in (*BATCH_TYPES, "runtimeConfig")},
        }

    def _cancel(self, operation: str) -> Any:
        batch = next((b for b in self.batches.values() if b.operation == operation), None)
        if batch is None:
            return 404, _error(404, "NOT_FOUND", f"Not found: {operation}")
        if batch.state in ("PENDING", "RUNNING"):
            batch.script, batch.step = ["CANCELLING", "CANCELLED"], 0
        return 200, {}


def _error(code: int, status: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "status": status}}


@contextmanager
def serve_fake_dataproc() -> Iterator[FakeDataproc]:
    """The fake on a free port of 127.0.0.1 for the block's duration."""
    fake = FakeDataproc()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: Any) -> None:
            return

        def _answer(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else {}
            except ValueError:
                self._send(400, _error(400, "INVALID_ARGUMENT", "the body is not JSON"))
                return
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            status, answer = fake.handle(method, parts.path, query, body)
            self._send(status, answer)

        def _send(self, status: int, answer: Any) -> None:
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._answer("GET")

        def do_POST(self) -> None:
            self._answer("POST")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
