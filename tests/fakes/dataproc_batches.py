"""A fake of the Dataproc API's serverless batches and cluster jobs at the REST transport the
official client uses (`google-cloud-dataproc`, `transport="rest"`), built from the published
v1 definitions (google/cloud/dataproc/v1/batches.proto, jobs.proto and their HTTP rules), with
Cloud Storage for the driver output on the same port (tests/fakes/gcs_objects.py). Not
verified against the live service.

What it does: `POST /v1/projects/P/locations/L/batches?batchId=&requestId=` (checks the
batch id's form and one batch type; the same request id answers the same operation; a batch
id already used answers 409 ALREADY_EXISTS; 429 RESOURCE_EXHAUSTED while `refuse_quota` is
set), `GET .../batches/ID` (walks each batch through a script of states, one step per read,
enums as numbers when the client asks `enum-encoding=int`, as it does), and
`POST /v1/projects/P/regions/L/operations/OP:cancel` (CANCELLING, then CANCELLED).
Jobs: `POST /v1/projects/P/regions/R/jobs:submit` (one job type and a placement cluster
required; 429 RESOURCE_EXHAUSTED while `refuse_quota` is set; the same request id answers the
same job; a job id already used answers 409 ALREADY_EXISTS), `GET .../jobs/ID` (a script of
`JobStatus.State`s, as for batches, the driver output URI under the staging bucket), `POST
.../jobs/ID:cancel` (CANCEL_PENDING, then CANCELLED; 400 FAILED_PRECONDITION once the job is
over).

What it does not do: run anything or write driver output of its own (tests set
`output_on_create` or append to `gcs`), check credentials (the client sends none: anonymous),
check that a placement cluster exists, list, delete or wait for operations or jobs, check URIs,
runtime versions, quotas of its own, or serve any other API (clusters, templates,
submitJobAsOperation).
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

from tests.fakes.gcs_objects import FakeGcs

STATE_NUMBERS = {
    "STATE_UNSPECIFIED": 0, "PENDING": 1, "RUNNING": 2, "CANCELLING": 3, "CANCELLED": 4,
    "SUCCEEDED": 5, "FAILED": 6,
}  # fmt: skip
BATCH_TYPES = ("pysparkBatch", "sparkBatch", "sparkRBatch", "sparkSqlBatch")
BATCH_ID = re.compile(r"^[a-z0-9][a-z0-9-]{2,61}[a-z0-9]$")
_BATCHES = re.compile(r"^/v1/projects/([^/]+)/locations/([^/]+)/batches(?:/([^/:]+))?$")
JOB_STATE_NUMBERS = {
    "STATE_UNSPECIFIED": 0, "PENDING": 1, "SETUP_DONE": 8, "RUNNING": 2, "CANCEL_PENDING": 3,
    "CANCEL_STARTED": 7, "CANCELLED": 4, "DONE": 5, "ERROR": 6, "ATTEMPT_FAILURE": 9,
}  # fmt: skip
JOB_TYPES = ("hadoopJob", "sparkJob", "pysparkJob", "hiveJob", "pigJob", "sparkRJob",
             "sparkSqlJob", "prestoJob", "trinoJob", "flinkJob")  # fmt: skip
_JOBS = re.compile(r"^/v1/projects/([^/]+)/regions/([^/]+)/jobs(?::submit|/([^/:]+)(:cancel)?)$")
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
class FakeJob:
    body: dict[str, Any]
    script: list[str]
    output_uri: str
    step: int = 0
    details: str = ""

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
    jobs: dict[str, FakeJob] = field(default_factory=dict)  # by job id
    job_requests: dict[str, str] = field(default_factory=dict)  # request id -> job id
    job_submits: int = 0
    job_scripts: list[list[str]] = field(default_factory=list)
    gcs: FakeGcs = field(default_factory=FakeGcs)
    output_on_create: bytes = b""  # written as each new batch's or job's driver output
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
            if found := _JOBS.match(path):
                job_id, cancel = found.group(3), found.group(4)
                if method == "POST" and job_id is None:
                    return self._submit_job(found.group(1), body)
                if method == "GET" and job_id and not cancel:
                    return self._get_job(job_id, numbers)
                if method == "POST" and job_id and cancel:
                    return self._cancel_job(job_id, numbers)
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
        if self.output_on_create:
            self.gcs.append(f"{_batch_output(name)}.000000000", self.output_on_create)
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
            "runtimeInfo": {"outputUri": _batch_output(batch.name)},
            **{k: v for k, v in batch.body.items() if k in (*BATCH_TYPES, "runtimeConfig")},
        }

    def _submit_job(self, project: str, body: Any) -> Any:
        self.job_submits += 1
        if self.refuse_quota:
            return 429, _error(429, "RESOURCE_EXHAUSTED", "Insufficient 'CPUS' quota.")
        request_id = str(body.get("requestId") or "")
        if request_id and request_id in self.job_requests:
            return self._job_view(self.job_requests[request_id], numbers=False, advance=False)
        job = body.get("job") or {}
        job_id = str((job.get("reference") or {}).get("jobId") or uuid.uuid4())
        if sum(1 for kind in JOB_TYPES if kind in job) != 1:
            return 400, _error(400, "INVALID_ARGUMENT", "exactly one job type is required")
        if not (job.get("placement") or {}).get("clusterName"):
            return 400, _error(400, "INVALID_ARGUMENT", "placement.clusterName is required")
        if job_id in self.jobs:
            return 409, _error(409, "ALREADY_EXISTS", f"Already exists: Job {job_id}")
        script = self.job_scripts.pop(0) if self.job_scripts else ["PENDING", "RUNNING", "DONE"]
        meta = uuid.uuid5(uuid.NAMESPACE_URL, f"{project}/{job_id}")
        output = f"gs://dataproc-staging/google-cloud-dataproc-metainfo/{meta}/jobs/{job_id}/driveroutput"
        self.jobs[job_id] = FakeJob(job, script, output)
        if self.output_on_create:
            self.gcs.append(f"{output}.000000000", self.output_on_create)
        if request_id:
            self.job_requests[request_id] = job_id
        return self._job_view(job_id, numbers=False, advance=False)

    def _get_job(self, job_id: str, numbers: bool) -> Any:
        if job_id not in self.jobs:
            return 404, _error(404, "NOT_FOUND", f"Not found: Job {job_id}")
        return self._job_view(job_id, numbers, advance=True)

    def _cancel_job(self, job_id: str, numbers: bool) -> Any:
        job = self.jobs.get(job_id)
        if job is None:
            return 404, _error(404, "NOT_FOUND", f"Not found: Job {job_id}")
        if job.state not in ("PENDING", "SETUP_DONE", "RUNNING"):
            return 400, _error(400, "FAILED_PRECONDITION", f"Job {job_id} is {job.state}")
        job.script, job.step = ["CANCEL_PENDING", "CANCELLED"], 0
        return self._job_view(job_id, numbers, advance=False)

    def _job_view(self, job_id: str, numbers: bool, advance: bool) -> Any:
        job = self.jobs[job_id]
        state = job.state
        if advance:
            job.step += 1
        status = {"state": JOB_STATE_NUMBERS[state] if numbers else state, "details": job.details}
        return 200, {
            **job.body,
            "status": status,
            "driverOutputResourceUri": job.output_uri,
            "jobUuid": str(uuid.uuid5(uuid.NAMESPACE_URL, job_id)),
        }

    def _cancel(self, operation: str) -> Any:
        batch = next((b for b in self.batches.values() if b.operation == operation), None)
        if batch is None:
            return 404, _error(404, "NOT_FOUND", f"Not found: {operation}")
        if batch.state in ("PENDING", "RUNNING"):
            batch.script, batch.step = ["CANCELLING", "CANCELLED"], 0
        return 200, {}


def _batch_output(name: str) -> str:
    return f"gs://dataproc-staging/{name}/driveroutput"


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
            if fake.gcs.handles(parts.path):
                headers = {k.lower(): v for k, v in self.headers.items()}
                code, data, extra = fake.gcs.handle(parts.path, query, headers)
                self._send_raw(code, data, extra)
                return
            status, answer = fake.handle(method, parts.path, query, body)
            self._send(status, answer)

        def _send_raw(self, status: int, data: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

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
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
