"""A fake of Databricks' Jobs API for one-time runs, at the HTTP boundary, built from the
published Jobs API definitions (2.1; the SDK calls the same operations under /api/2.2, which
are served alike): `POST jobs/runs/submit`, `GET jobs/runs/get`, `POST jobs/runs/cancel`,
`GET jobs/runs/get-output`, and the DBFS API's `GET dbfs/get-status` and `GET dbfs/read`
(2.0) for delivered cluster logs. Not verified against the live service.

What it does: checks the bearer token; keeps runs in memory; answers the same run for a
repeated `idempotency_token`; checks a submitted task has a `task_key`, one task type and a
cluster (new or existing); walks each run through a script of (life_cycle_state,
result_state) pairs, one step per `runs/get`; cancels (TERMINATED/CANCELED); serves a task
run's output (`get-output` refuses a multi-task parent run, as the service does); refuses
submissions with 429 RESOURCE_EXHAUSTED while `refuse_quota` is set; names each task run's
cluster (`cluster_instance.cluster_id`); serves files of `dbfs` (tests write them, as a
cluster's log delivery would): their size, and `length` bytes from `offset`, base64.

What it does not do: run anything, start clusters, check node types, Spark versions,
libraries or workspace paths, enforce permissions, page, repair runs, jobs (`jobs/create`),
deliver cluster logs by itself, DBFS writes, listings or the 1 MB read limit, or any other
API.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

TASK_TYPES = ("spark_python_task", "spark_jar_task", "python_wheel_task", "notebook_task")
DEFAULT_SCRIPT = [("PENDING", None), ("RUNNING", None), ("TERMINATED", "SUCCESS")]


@dataclass
class FakeRun:
    run_id: int
    task_run_id: int
    body: dict[str, Any]
    script: list[tuple[str, str | None]]
    step: int = 0
    message: str = ""
    logs: str = ""
    error: str | None = None

    @property
    def state(self) -> tuple[str, str | None]:
        return self.script[min(self.step, len(self.script) - 1)]


@dataclass
class FakeDatabricks:
    token: str
    url: str = ""
    runs: dict[int, FakeRun] = field(default_factory=dict)
    tokens: dict[str, int] = field(default_factory=dict)
    submissions: int = 0  # POSTs to runs/submit, accepted or not
    refuse_quota: bool = False
    # What the next runs get: their scripts and output, in order of submission.
    scripts: list[list[tuple[str, str | None]]] = field(default_factory=list)
    output: str = "hello from the fake driver\nPi is roughly 3.14\n"
    dbfs: dict[str, bytearray] = field(default_factory=dict)  # dbfs:/path -> content
    dbfs_reads: list[int] = field(default_factory=list)  # the offsets reads asked
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, method: str, path: str, query: dict[str, str], body: Any) -> Any:
        operation = path.split("/api/2.1/jobs/", 1)[-1].split("/api/2.2/jobs/", 1)[-1]
        with self.lock:
            if (method, operation) == ("POST", "runs/submit"):
                return self._submit(body)
            if (method, operation) == ("GET", "runs/get"):
                return self._get(int(query.get("run_id", "0")))
            if (method, operation) == ("POST", "runs/cancel"):
                return self._cancel(int(body.get("run_id", 0)))
            if (method, operation) == ("GET", "runs/get-output"):
                return self._output(int(query.get("run_id", "0")))
            if method == "GET" and path in ("/api/2.0/dbfs/get-status", "/api/2.0/dbfs/read"):
                return self._dbfs(path.rsplit("/", 1)[-1], query)
        return 404, {"error_code": "ENDPOINT_NOT_FOUND", "message": f"no API {path}"}

    def _submit(self, body: dict[str, Any]) -> Any:
        self.submissions += 1
        if self.refuse_quota:
            return 429, {
                "error_code": "RESOURCE_EXHAUSTED",
                "message": "The workspace has reached its quota of concurrent runs",
            }
        token = body.get("idempotency_token")
        if token and token in self.tokens:
            return 200, {"run_id": self.tokens[token]}
        tasks = body.get("tasks") or []
        if not tasks:
            return 400, _invalid("tasks: at least one task is required")
        for task in tasks:
            kinds = [k for k in TASK_TYPES if k in task]
            if not task.get("task_key") or len(kinds) != 1:
                return 400, _invalid("each task needs a task_key and exactly one task type")
            if ("new_cluster" in task) == ("existing_cluster_id" in task):
                return 400, _invalid("each task needs new_cluster or existing_cluster_id")
        run_id = 1000 + len(self.runs) * 2
        script = self.scripts.pop(0) if self.scripts else list(DEFAULT_SCRIPT)
        run = FakeRun(run_id, run_id + 1, body, script, logs=self.output)
        self.runs[run_id] = run
        if token:
            self.tokens[token] = run_id
        return 200, {"run_id": run_id}

    def _run_json(self, run: FakeRun) -> dict[str, Any]:
        life, result = run.state
        state: dict[str, Any] = {"life_cycle_state": life, "state_message": run.message}
        if result is not None:
            state["result_state"] = result
        task = run.body["tasks"][0]
        return {
            "run_id": run.run_id,
            "run_name": run.body.get("run_name"),
            "run_page_url": f"{self.url}/?o=1#job/0/run/{run.run_id}",
            "state": state,
            "tasks": [
                {
                    "run_id": run.task_run_id,
                    "task_key": task["task_key"],
                    "state": state,
                    "cluster_instance": {"cluster_id": f"0101-{run.run_id}-job"},
                }
            ],
        }

    def _get(self, run_id: int) -> Any:
        run = self.runs.get(run_id)
        if run is None:
            return 404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": f"Run {run_id}"}
        answer = self._run_json(run)
        run.step += 1
        return 200, answer

    def _cancel(self, run_id: int) -> Any:
        run = self.runs.get(run_id)
        if run is None:
            return 404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": f"Run {run_id}"}
        if run.state[0] not in ("TERMINATED", "SKIPPED", "INTERNAL_ERROR"):
            run.script = [("TERMINATED", "CANCELED")]
            run.message = "Run cancelled."
        return 200, {}

    def _dbfs(self, operation: str, query: dict[str, str]) -> Any:
        path = query.get("path", "")
        path = path if path.startswith("dbfs:") else f"dbfs:{path}"
        data = self.dbfs.get(path)
        if data is None:
            return 404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": f"No file: {path}"}
        if operation == "get-status":
            return 200, {"path": path, "is_dir": False, "file_size": len(data)}
        offset, length = int(query.get("offset", 0)), int(query.get("length", 0x80000))
        self.dbfs_reads.append(offset)
        chunk = bytes(data[offset : offset + length])
        return 200, {"bytes_read": len(chunk), "data": base64.b64encode(chunk).decode()}

    def _output(self, run_id: int) -> Any:
        if run_id in self.runs:
            return 400, _invalid(
                "Retrieving the output of runs with multiple tasks is not supported. "
                "Please retrieve the output of each individual task run instead."
            )
        run = next((r for r in self.runs.values() if r.task_run_id == run_id), None)
        if run is None:
            return 404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": f"Run {run_id}"}
        answer: dict[str, Any] = {"logs": run.logs, "logs_truncated": False}
        if run.error:
            answer["error"] = run.error
        return 200, answer


def _invalid(message: str) -> dict[str, str]:
    return {"error_code": "INVALID_PARAMETER_VALUE", "message": message}


@contextmanager
def serve_fake_databricks(token: str) -> Iterator[FakeDatabricks]:
    """The fake on a free port of 127.0.0.1 for the block's duration."""
    fake = FakeDatabricks(token)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: Any) -> None:
            return

        def _answer(self, method: str) -> None:
            if self.path.startswith("/.well-known/"):  # the SDK's host metadata: none here
                self._send(404, {"error_code": "ENDPOINT_NOT_FOUND", "message": self.path})
                return
            if self.headers.get("Authorization") != f"Bearer {fake.token}":
                self._send(401, {"error_code": "UNAUTHENTICATED", "message": "bad token"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else {}
            except ValueError:
                self._send(400, _invalid("the body is not JSON"))
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
