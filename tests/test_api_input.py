"""Bad input gets a 4xx naming the field, and nothing is stored half-made (live server)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.server import ChidoriServer


def job_count(server: ChidoriServer) -> int:
    with server.client() as client:
        return len(client.get("/api/v1/jobs", params={"limit": 1000}).json()["items"])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"application": "examples/pi.py", "cluster": "nowhere"}, "cluster"),
        ({"application": "examples/missing.py"}, "application"),
        ({"application": "examples/pi.py", "driver_memory": "-1g"}, "driver_memory"),
        ({"application": "examples/pi.py", "executor_memory": 0}, "executor_memory"),
        ({"application": "examples/pi.py", "driver_cores": -2}, "driver_cores"),
        ({"application": "examples/pi.py", "surprise": 1}, "surprise"),
        ({}, "application"),
        ({"application": "/etc/passwd"}, "application"),
        ({"application": "examples/../../../../etc/passwd"}, "application"),
        ({"application": "examples/pi.py", "py_files": ["nope.py"]}, "py_files[0]"),
        ({"application": "examples/pi.py", "timeout": "soon"}, "timeout"),
        ({"application": "ftp://host/app.py"}, "application"),
        ({"application": "examples/pi.py", "kind": "python", "jars": ["a.jar"]}, "jars"),
    ],
)
def test_bad_job_spec_is_refused_naming_the_field(
    server: ChidoriServer, body: dict[str, Any], field: str
) -> None:
    before = job_count(server)
    with server.client() as client:
        response = client.post("/api/v1/jobs", json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert field in [f["field"] for f in error["fields"]], error
    assert job_count(server) == before


def test_malformed_json_is_a_400_naming_the_body(server: ChidoriServer) -> None:
    with server.client() as client:
        response = client.post(
            "/api/v1/jobs",
            content=b'{"application": ',
            headers={"content-type": "application/json"},
        )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_json"
    assert response.json()["error"]["fields"][0]["field"] == "body"


def test_symlink_escaping_the_app_root_is_refused(server: ChidoriServer) -> None:
    link = server.app_roots[0] / "examples" / "escape-link.py"
    link.symlink_to("/etc/hostname")
    try:
        with server.client() as client:
            response = client.post("/api/v1/jobs", json={"application": "examples/escape-link.py"})
        assert response.status_code == 422
        assert "outside the allowed application roots" in response.json()["error"]["message"]
    finally:
        link.unlink()


def test_requests_without_a_valid_token_are_refused(server: ChidoriServer) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic !!"}):
        response = httpx.get(f"{server.url}/api/v1/jobs", headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
    response = httpx.post(f"{server.url}/api/v1/jobs", json={"application": "examples/pi.py"})
    assert response.status_code == 401


def test_basic_auth_with_the_token_as_password_is_accepted(server: ChidoriServer) -> None:
    response = httpx.get(f"{server.url}/api/v1/jobs", auth=("anyone", server.token))
    assert response.status_code == 200


def test_unknown_job_and_bad_query_values(server: ChidoriServer) -> None:
    with server.client() as client:
        assert client.get("/api/v1/jobs/424242").status_code == 404
        assert client.get("/api/v1/jobs/abc").status_code == 422
        bad_state = client.get("/api/v1/jobs", params={"state": "NAPPING"})
        assert bad_state.status_code == 422
        assert bad_state.json()["error"]["fields"][0]["field"] == "state[0]"
        assert client.get("/api/v1/jobs", params={"cursor": "garbage"}).status_code == 422
        assert client.get("/api/v1/jobs", params={"limit": 0}).status_code == 422
        assert client.get("/api/v1/jobs", params={"label": "nocolon"}).status_code == 422
        naive = client.get("/api/v1/jobs", params={"created_after": "2026-01-01T00:00:00"})
        assert naive.status_code == 422
        assert client.get("/no/such/path").status_code == 404


def test_idempotency_key_over_http(server: ChidoriServer) -> None:
    body = {"application": "examples/train.py", "kind": "python", "name": "idem"}
    with server.client() as client:
        first = client.post("/api/v1/jobs", json=body, headers={"Idempotency-Key": "abc-1"})
        again = client.post("/api/v1/jobs", json=body, headers={"Idempotency-Key": "abc-1"})
        other = client.post(
            "/api/v1/jobs", json={**body, "name": "other"}, headers={"Idempotency-Key": "abc-1"}
        )
    assert first.status_code == 201 and again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert other.status_code == 409
    server.wait(first.json()["id"])


def test_health_and_openapi_need_no_token(server: ChidoriServer) -> None:
    assert httpx.get(f"{server.url}/healthz").json()["status"] == "ok"
    assert httpx.get(f"{server.url}/readyz").json()["status"] == "ready"
    paths = httpx.get(f"{server.url}/openapi.json").json()["paths"]
    assert "/api/v1/jobs" in paths and "/api/v1/jobs/{job_id}/logs" in paths
