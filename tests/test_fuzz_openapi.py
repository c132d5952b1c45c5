"""Fuzz the whole OpenAPI schema of a real server with Schemathesis: no 5xx, and every answer
matches the schema (documented status code, content type and body).

How: one `chidori server` with `CHIDORI_MAX_RUNNING_JOBS=0` (jobs are queued, never run), and
the `schemathesis run` CLI against its `/openapi.json` as the bootstrap admin, with checks
`not_a_server_error`, `status_code_conformance`, `content_type_conformance` and
`response_schema_conformance`, in all its phases (examples, coverage, fuzzing, stateful).
Bounded: a fixed number of examples per operation, a fixed seed and an overall time budget
(`FUZZ_SECONDS`). Every operation is fuzzed; nothing is excluded.

Fuzzing creates users and tokens, revokes tokens, rewrites the policy and cancels jobs. It
cannot lock itself out: it authenticates with the bootstrap admin token, which is not a token
row (revoking by id cannot reach it) and whose principal does not depend on the `admin` user
row; the server refuses to disable or demote the bootstrap admin `admin`.

Two adjustments are made to requests, by the `before_call` hook below (this file is also
Schemathesis' hooks module, loaded with SCHEMATHESIS_HOOKS), because here no job ever ends:
- `GET /jobs/{id}/wait` long-polls up to `timeout` seconds (default 30, at most 60): a
  missing `timeout`, or a numeric one above 1 s, becomes 1 s, so that polls stay short.
- `GET /jobs/{id}/logs` with `follow` streams until the job ends: the job is cancelled first
  (a queued job is CANCELLED at once), so the stream ends after what is already logged.

On failure the Schemathesis report (with curl commands to reproduce) and the server's
unhandled errors are shown. Run it alone with `pytest tests/test_fuzz_openapi.py`.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import schemathesis

from tests.server import REPO, ChidoriServer, add_spark_rest_user, free_port

FUZZ_SECONDS = 30
MAX_EXAMPLES = 25
SEED = 20260101
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
)
WAIT_LIMIT_SECONDS = 1.0
URL_ENV = "CHIDORI_FUZZ_URL"
TOKEN_ENV = "CHIDORI_FUZZ_TOKEN"

WAIT_PATH = "/api/v1/jobs/{job_id}/wait"
LOGS_PATH = "/api/v1/jobs/{job_id}/logs"


@schemathesis.hook
def before_call(
    context: schemathesis.HookContext, case: schemathesis.Case[Any], kwargs: dict[str, Any]
) -> None:
    """Keep long polls short and let log streams end (see the module docstring)."""
    del context, kwargs
    path = case.operation.path
    if case.query is None:
        case.query = {}
    query = case.query
    if not isinstance(query, dict):
        return
    if path == WAIT_PATH:
        timeout = query.setdefault("timeout", WAIT_LIMIT_SECONDS)  # the default is 30 s
        if isinstance(timeout, int | float) and not isinstance(timeout, bool):
            if timeout > WAIT_LIMIT_SECONDS:
                query["timeout"] = WAIT_LIMIT_SECONDS
        elif isinstance(timeout, str):
            try:
                if float(timeout) > WAIT_LIMIT_SECONDS:
                    query["timeout"] = str(WAIT_LIMIT_SECONDS)
            except ValueError:
                pass
    elif path == LOGS_PATH and "follow" in query:
        _cancel(case.path_parameters or {})


def _cancel(path_parameters: dict[str, Any]) -> None:
    url, token = os.environ.get(URL_ENV), os.environ.get(TOKEN_ENV)
    job_id = path_parameters.get("job_id")
    if not url or not token or job_id is None:
        return
    with contextlib.suppress(httpx.HTTPError):  # the fuzzed request itself will tell
        httpx.delete(
            f"{url}/api/v1/jobs/{quote(str(job_id), safe='')}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChidoriServer]:
    """Jobs queue and never run; Spark's REST listener runs too, as a plain run-as user;
    Python environments resolve against a closed port (no index)."""
    home = tmp_path_factory.mktemp("fuzz-server")
    server = ChidoriServer(
        home,
        spark_rest_port=free_port(),
        env={
            "CHIDORI_MAX_RUNNING_JOBS": "0",
            "CHIDORI_SPARK_REST_ALLOWED_NETWORKS": "127.0.0.1/32",
            # Fuzzed requirements are resolved before admission: against a closed local port
            # they fail at once, instead of asking PyPI about thousands of invented names.
            "CHIDORI_PIP_INDEX_URL": "http://127.0.0.1:9/simple",
        },
    )
    add_spark_rest_user(server, "rest")
    with server as running:
        yield running


# Bodies no schema-driven generator sends: JSON nested past any parser's recursion limit, and
# the non-standard NaN/Infinity literals Python's json module accepts by default.
DEPTH = 100_000
HOSTILE_BODIES = {
    "nested arrays": "[" * DEPTH + "]" * DEPTH,
    "nested objects": '{"a":' * DEPTH + "1" + "}" * DEPTH,
    "nested in a field": '{"kind":"python","application":"a.py","args":'
    + "[" * DEPTH
    + "]" * DEPTH
    + "}",
    "bare NaN": "NaN",
    "NaN field": '{"kind":"python","application":"a.py","timeout":NaN}',
    "Infinity fields": '{"expires_in":Infinity,"driver_cores":-Infinity,"priority":1e999}',
    "huge number": '{"executor_instances":' + "9" * 5000 + "}",
}
SPARK_REST_PATHS = ("/v1/submissions/create", "/v1/submissions/kill/driver-1")


def body_routes(schema: dict[str, Any]) -> list[tuple[str, str]]:
    """Every (method, path) of the schema that takes a request body, path parameters
    filled with 1."""
    routes = []
    for path, operations in schema["paths"].items():
        for method in operations:
            if method in ("post", "put", "patch"):
                routes.append((method.upper(), re.sub(r"\{[^}]*\}", "1", path)))
    return routes


def test_hostile_json_bodies_never_cause_a_server_error(fuzz_server: ChidoriServer) -> None:
    """A deterministic sweep: every body-taking route of the API (Livy's included) and of the
    Spark REST listener, each hostile body: a 4xx, never a 5xx or a dropped connection."""
    assert fuzz_server.spark_rest_url is not None
    with fuzz_server.client() as client:
        routes = [
            (m, f"{fuzz_server.url}{p}") for m, p in body_routes(client.get("/openapi.json").json())
        ]
    routes += [("POST", f"{fuzz_server.spark_rest_url}{p}") for p in SPARK_REST_PATHS]
    paths = {url.split("/", 3)[3] for _, url in routes}
    assert {"api/v1/jobs", "batches", "sessions", "sessions/1/statements"} <= paths, paths
    failures = []
    headers = {"Authorization": f"Bearer {fuzz_server.token}", "Content-Type": "application/json"}
    with httpx.Client(headers=headers, timeout=30) as http:
        for method, url in routes:
            for name, body in HOSTILE_BODIES.items():
                try:
                    answer = http.request(method, url, content=body)
                except httpx.HTTPError as exc:
                    failures.append(f"{method} {url} with {name}: {exc!r}")
                    continue
                if answer.status_code >= 500:
                    failures.append(f"{method} {url} with {name}: {answer.status_code}")
    assert not failures, "\n".join(failures) + "\n" + unhandled_errors(fuzz_server)


def unhandled_errors(server: ChidoriServer, limit: int = 20_000) -> str:
    """The server log from its first unhandled error on (tracebacks), if any."""
    try:
        log = server.log_path.read_text(errors="replace")
    except OSError:
        return ""
    start = log.find("unhandled error")
    return "" if start < 0 else log[start : start + limit]


def test_openapi_fuzz(fuzz_server: ChidoriServer, tmp_path: Path) -> None:
    argv = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{fuzz_server.url}/openapi.json",
        "--header",
        f"Authorization: Bearer {fuzz_server.token}",
        "--checks",
        ",".join(CHECKS),
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--max-time",
        str(FUZZ_SECONDS),
        "--workers",
        "1",
        "--request-timeout",
        "15",
        "--generation-database",
        "none",
        "--report-dir",
        str(tmp_path / "report"),
        "--no-color",
    ]
    env = dict(os.environ)
    env.update(
        {
            "SCHEMATHESIS_HOOKS": str(Path(__file__).resolve()),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
            URL_ENV: fuzz_server.url,
            TOKEN_ENV: fuzz_server.token,
        }
    )
    result = subprocess.run(
        argv,
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=FUZZ_SECONDS + 90,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, (
        f"schemathesis found problems (exit {result.returncode}):\n{output}\n"
        f"--- server log (unhandled errors) ---\n{unhandled_errors(fuzz_server)}"
    )
