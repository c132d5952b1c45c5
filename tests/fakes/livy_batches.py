"""A fake of a managed Livy service's batch API (HDInsight, EMR) at its HTTP boundary, built
from Apache Livy's REST API reference (`/batches`), for what Chidori's own Livy API does not
answer: `appInfo.sparkUiUrl`, the Spark UI (YARN's proxy) a managed Livy names once the
application runs. Apache Livy itself cannot be installed here. Not verified against a live
service.

What it does: `POST /batches` (a batch with the body's name), `GET /batches` (paged with
`from`/`size`), `GET /batches/{id}` (walks a script of Livy states, one step per read; from
the first non-starting state on, `appId` and `appInfo.sparkUiUrl` made from `spark_ui`),
`GET /batches/{id}/log` (the `log` lines, paged), `DELETE /batches/{id}` (state killed).

What it does not do: run anything, check credentials or the CSRF header, sessions or
statements, `GET /batches/{id}/state`, recovery, or any limit on kept lines.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

_ONE = re.compile(r"^/batches/(\d+)(/log)?$")


@dataclass
class FakeLivyBatch:
    id: int
    body: dict[str, Any]
    script: list[str]
    step: int = 0

    @property
    def state(self) -> str:
        return self.script[min(self.step, len(self.script) - 1)]


@dataclass
class FakeLivy:
    url: str = ""
    batches: dict[int, FakeLivyBatch] = field(default_factory=dict)
    scripts: list[list[str]] = field(default_factory=list)
    spark_ui: str = "http://rm.example:8088/proxy/{app_id}/"  # the sparkUiUrl it names
    log: list[str] = field(default_factory=lambda: ["Pi is roughly 3.14"])
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, method: str, path: str, query: dict[str, str], body: Any) -> Any:
        with self.lock:
            if path == "/batches" and method == "POST":
                batch_id = len(self.batches)
                script = self.scripts.pop(0) if self.scripts else ["starting", "running", "success"]
                self.batches[batch_id] = FakeLivyBatch(batch_id, body, script)
                return 201, self._view(self.batches[batch_id])
            if path == "/batches" and method == "GET":
                start, size = int(query.get("from", 0)), int(query.get("size", 20))
                found = list(self.batches.values())[start : start + size]
                sessions = [self._view(b) for b in found]
                return 200, {"from": start, "total": len(self.batches), "sessions": sessions}
            match = _ONE.match(path)
            batch = self.batches.get(int(match.group(1))) if match else None
            if match is None or batch is None:
                return 404, {"msg": f"no {path}"}
            if method == "DELETE":
                batch.script, batch.step = ["killed"], 0
                return 200, {"msg": "deleted"}
            if match.group(2):
                start, size = int(query.get("from", 0)), int(query.get("size", 100))
                lines = self.log[start : start + size]
                return 200, {"id": batch.id, "from": start, "total": len(self.log), "log": lines}
            view = self._view(batch)
            batch.step += 1
            return 200, view

    def _view(self, batch: FakeLivyBatch) -> dict[str, Any]:
        started = batch.state not in ("not_started", "starting")
        app_id = f"application_1700000000000_{batch.id:04d}" if started else None
        ui = self.spark_ui.format(app_id=app_id) if app_id else None
        return {
            "id": batch.id, "name": batch.body.get("name"), "state": batch.state,
            "appId": app_id, "appInfo": {"driverLogUrl": None, "sparkUiUrl": ui}, "log": [],
        }  # fmt: skip


@contextmanager
def serve_fake_livy() -> Iterator[FakeLivy]:
    """The fake on a free port of 127.0.0.1 for the block's duration."""
    fake = FakeLivy()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: Any) -> None:
            return

        def _answer(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else {}
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            status, answer = fake.handle(method, parts.path, query, body)
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

        def do_DELETE(self) -> None:
            self._answer("DELETE")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
