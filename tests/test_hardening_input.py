"""Bad input at every door answers 4xx naming the field, never 500, and never wedges a slot
(issue 23: defect 1 and the input parts of 9)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from chidori.api.spark_rest_messages import CreateSubmissionRequest, spec_from_request
from chidori.domain.errors import InvalidRequest
from tests.server import ChidoriServer
from tests.test_ui_login import sign_in

PY = {"kind": "python", "application": "examples/train.py"}
HUGE = "99999999999999999999"  # above 2^63


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChidoriServer]:
    config = tmp_path_factory.mktemp("config") / "chidori.yaml"
    config.write_text("security:\n  submit_rate_per_second: 0\n")
    with ChidoriServer(tmp_path_factory.mktemp("input"), config=config) as running:
        yield running


def raw(server: ChidoriServer, method: str, path: str, body: str, **kw: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {server.token}", "Content-Type": "application/json"}
    return httpx.request(method, server.url + path, content=body, headers=headers, timeout=30)


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"args": ["a\u0000b"]}, "args"),
        ({"name": "n\u0000"}, "name"),
        ({"kind": "spark", "main_class": "a.B\u0000"}, "main_class"),
        ({"conf": {"spark.sql.x": "1\u0000"}}, "conf"),
        ({"labels": {"team": "a\u0000"}}, "labels"),
    ],
)
def test_a_nul_byte_is_refused_at_the_api(
    server: ChidoriServer, extra: dict[str, Any], field: str
) -> None:
    with server.client() as client:
        answer = client.post("/api/v1/jobs", json={**PY, **extra})
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert [f["field"] for f in error["fields"]] == [field]
    assert "NUL" in error["fields"][0]["message"]


def test_a_nul_byte_is_refused_through_livy_and_spark_rest(server: ChidoriServer) -> None:
    livy = httpx.post(
        f"{server.url}/batches",
        json={"file": "examples/train.py", "args": ["x\u0000"]},
        auth=("admin", server.token),
    )
    assert livy.status_code == 400 and "NUL" in livy.json()["msg"], livy.text
    request = CreateSubmissionRequest.model_validate(
        {
            "action": "CreateSubmissionRequest",
            "appResource": "file:/opt/app.jar",
            "mainClass": "App",
            "appArgs": ["ok", "bad\u0000"],
            "clientSparkVersion": "4.3.0",
            "environmentVariables": {},
            "sparkProperties": {},
        }
    )
    with pytest.raises(InvalidRequest) as error:
        spec_from_request(request, "local")
    assert error.value.fields[0].field == "appArgs" and "NUL" in error.value.fields[0].message


def test_nothing_wedges_the_running_slots(server: ChidoriServer) -> None:
    """The defect: each NUL job took a running slot forever. After many refused ones, a job
    still runs at once."""
    with server.client() as client:
        for _ in range(6):
            client.post("/api/v1/jobs", json={**PY, "args": ["\u0000"]})
    job = server.submit(**PY)
    assert server.wait(job["id"], timeout=120)["state"] == "SUCCEEDED"


def test_a_comma_cannot_smuggle_a_second_path(server: ChidoriServer) -> None:
    with server.client() as client:
        answer = client.post("/api/v1/jobs", json={**PY, "py_files": ["https://h/a.py,/etc/x"]})
    assert answer.status_code == 422
    assert [f["field"] for f in answer.json()["error"]["fields"]] == ["py_files[0]"]


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_durations_are_refused(server: ChidoriServer, number: str) -> None:
    job = server.submit(**PY, name="to-share")
    token = raw(server, "POST", "/api/v1/tokens", f'{{"user": "admin", "expires_in": {number}}}')
    share = raw(server, "POST", f"/api/v1/jobs/{job['id']}/share", f'{{"expires_in": {number}}}')
    timeout = raw(server, "POST", "/api/v1/jobs", json.dumps(PY)[:-1] + f', "timeout": {number}}}')
    for answer in (token, share, timeout):
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"]["fields"][0]["field"] in ("expires_in", "timeout")


@pytest.mark.parametrize(
    "path",
    ["/api/v1/jobs", "/api/v1/admin/users", "/api/v1/tokens", "/batches", "/sessions"],
)
def test_deeply_nested_json_is_a_bad_request(server: ChidoriServer, path: str) -> None:
    body = '{"a": ' * 50_000 + "1" + "}" * 50_000
    answer = raw(server, "POST", path, body)
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text[:200])


@pytest.mark.parametrize(
    "path",
    [
        f"/api/v1/jobs/{HUGE}",
        f"/api/v1/jobs/{HUGE}/logs",
        f"/batches/{HUGE}",
        f"/sessions/{HUGE}",
        f"/ui/jobs/{HUGE}",
    ],
)
def test_ids_beyond_64_bits_are_not_found(server: ChidoriServer, path: str) -> None:
    if path.startswith("/ui/"):
        with sign_in(server, server.token) as ui:
            answer = ui.get(path)
    else:
        with server.client() as client:
            answer = client.get(path)
    assert answer.status_code in (404, 422), (answer.status_code, answer.text[:200])


def test_notice_text_cannot_be_injected_into_a_page(server: ChidoriServer) -> None:
    job = server.submit(**PY, name="notice")
    with sign_in(server, server.token) as client:
        evil = {"notice": "Your session expired: go to evil.example"}
        page = client.get(f"/ui/jobs/{job['id']}", params=evil)
        known = client.get(f"/ui/jobs/{job['id']}", params={"notice": "cancel-requested"})
    assert page.status_code == 200 and "evil.example" not in page.text
    assert "Cancel requested" in known.text


def test_the_api_docs_load_nothing_from_elsewhere(server: ChidoriServer) -> None:
    docs = httpx.get(f"{server.url}/docs")
    assert docs.status_code == 200
    assert "cdn.jsdelivr" not in docs.text and "unpkg" not in docs.text
    assert "https://" not in docs.text.split("<body", 1)[-1].split("</body>")[0].replace(
        "https://fastapi.tiangolo.com", ""
    )


def test_a_job_stored_before_the_input_checks_still_loads() -> None:
    """Specs read back from the store skip the input-only checks (NUL, commas): a job accepted
    before them is still listed and shown (and fails its attempt with a reason), while the
    same fields arriving now are refused."""
    from pydantic import ValidationError

    from chidori.domain.spec import JobSpec

    stored = {"kind": "python", "application": "/apps/a.py", "args": ["a\x00b"]}
    stored_paths = {"kind": "spark", "application": "/apps/a.jar", "files": ["/a,/b"]}
    assert JobSpec.from_stored(stored).args == ["a\x00b"]
    assert JobSpec.from_stored(stored_paths).files == ["/a,/b"]
    for data in (stored, stored_paths):
        with pytest.raises(ValidationError):
            JobSpec.model_validate(data)
