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
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import schemathesis

from tests.server import REPO, ChidoriServer

FUZZ_SECONDS = 60
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
    home = tmp_path_factory.mktemp("fuzz-server")
    with ChidoriServer(home, env={"CHIDORI_MAX_RUNNING_JOBS": "0"}) as running:
        yield running


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
