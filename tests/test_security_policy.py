"""What jobs may ask for, secrets in conf, and the HTTP hardening (live servers)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from chidori.backends.base import LaunchRequest
from chidori.backends.spark import SparkBackend
from chidori.config import ClusterConfig
from chidori.domain.records import Job
from chidori.domain.spec import JobSpec
from chidori.domain.states import JobState
from tests.server import ChidoriServer

TRAIN = {"kind": "python", "application": "examples/train.py"}
PI = {"application": "examples/pi.py"}


@pytest.fixture(scope="module")
def policed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ChidoriServer, str]]:
    """A server with a policy, and the token of a plain user limited to cluster local."""
    env = {"CHIDORI_MAX_RUNNING_JOBS": "0"}  # nothing runs: these tests only submit
    with ChidoriServer(tmp_path_factory.mktemp("policy"), env=env) as server:
        with server.client() as admin:
            admin.post(
                "/api/v1/admin/users",
                json={"name": "uma", "role": "user", "clusters": ["local"], "queues": ["default"]},
            )
            token = admin.post("/api/v1/tokens", json={"user": "uma"}).json()["token"]
            policy = admin.put(
                "/api/v1/admin/policy",
                json={
                    "max_driver_memory": "2g",
                    "max_executor_memory": "4g",
                    "max_executor_instances": 4,
                    "max_driver_cores": 2,
                    "allowed_schemes": ["hdfs", "s3a"],
                },
            )
            assert policy.status_code == 200, policy.text
        yield server, token


def submit_as(server: ChidoriServer, token: str, body: dict[str, Any]) -> httpx.Response:
    with server.client(token) as client:
        return client.post("/api/v1/jobs", json=body)


def fields(response: httpx.Response) -> list[str]:
    return [f["field"] for f in response.json()["error"]["fields"]]


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        (
            {"conf": {"spark.driver.extraJavaOptions": "-javaagent:/tmp/x.jar"}},
            "conf.spark.driver.extraJavaOptions",
        ),
        (
            {"conf": {"spark.executor.extraJavaOptions": "-Dx=1"}},
            "conf.spark.executor.extraJavaOptions",
        ),
        (
            {"conf": {"spark.kubernetes.authenticate.driver.oauthToken": "t"}},
            "conf.spark.kubernetes.authenticate.driver.oauthToken",
        ),
        ({"conf": {"SPARK.DRIVER.EXTRACLASSPATH": "/x"}}, "conf.SPARK.DRIVER.EXTRACLASSPATH"),
        ({"conf": {"spark.master": "spark://elsewhere:7077"}}, "conf.spark.master"),
        ({"driver_memory": "3g"}, "driver_memory"),
        ({"executor_memory": "8g"}, "executor_memory"),
        ({"executor_instances": 5}, "executor_instances"),
        ({"driver_cores": 3}, "driver_cores"),
        ({"application": "https://example.invalid/app.py"}, "application"),
        ({"jars": ["gs://bucket/lib.jar"]}, "jars[0]"),
    ],
)
def test_policy_refuses_what_it_forbids(
    policed: tuple[ChidoriServer, str], extra: dict[str, Any], field: str
) -> None:
    server, token = policed
    response = submit_as(server, token, PI | extra)
    assert response.status_code == 422, response.text
    assert field in fields(response)


def test_policy_allows_what_fits(policed: tuple[ChidoriServer, str]) -> None:
    server, token = policed
    body = PI | {
        "driver_memory": "2g",
        "executor_instances": 4,
        "conf": {"spark.sql.shuffle.partitions": "4"},
    }
    assert submit_as(server, token, body).status_code == 201
    assert submit_as(server, token, PI | {"application": "s3a://bucket/app.py"}).status_code == 201


def test_admins_are_exempt_from_size_caps_and_conf_rules(
    policed: tuple[ChidoriServer, str],
) -> None:
    server, _ = policed
    body = PI | {"driver_memory": "8g", "conf": {"spark.driver.extraJavaOptions": "-Dok=1"}}
    assert submit_as(server, server.token, body).status_code == 201


def test_clusters_and_queues_not_granted_to_a_user_are_forbidden(
    policed: tuple[ChidoriServer, str], tmp_path: Path
) -> None:
    server, token = policed
    response = submit_as(server, token, TRAIN | {"queue": "vip"})
    assert response.status_code == 403 and fields(response) == ["queue"]


def test_an_invalid_policy_is_refused_and_the_old_one_kept(
    policed: tuple[ChidoriServer, str],
) -> None:
    server, _ = policed
    with server.client() as admin:
        before = admin.get("/api/v1/admin/policy").json()
        response = admin.put("/api/v1/admin/policy", json={"max_driver_memory": "lots"})
        assert response.status_code == 422 and fields(response) == ["max_driver_memory"]
        assert admin.get("/api/v1/admin/policy").json() == before
    assert before["max_driver_memory"] == "2g"
    assert "spark.driver.extraJavaOptions" in before["forbidden_conf"]


SECRET = "SUPERSECRET-9f3a1c"


def test_secret_conf_values_never_appear_in_api_answers_or_logs(
    policed: tuple[ChidoriServer, str],
) -> None:
    server, token = policed
    body = PI | {"conf": {"spark.hadoop.fs.s3a.secret.key": SECRET, "spark.app.color": "blue"}}
    response = submit_as(server, token, body)
    assert response.status_code == 201 and SECRET not in response.text
    job = response.json()
    assert job["spec"]["conf"]["spark.app.color"] == "blue"
    assert job["spec"]["conf"]["spark.hadoop.fs.s3a.secret.key"].endswith("(redacted)")
    with server.client(token) as client:
        for path in (
            f"/api/v1/jobs/{job['id']}",
            "/api/v1/jobs",
            f"/api/v1/jobs/{job['id']}/events",
        ):
            assert SECRET not in client.get(path).text
    assert SECRET not in server.server_log()


def test_spark_conf_reaches_the_driver_through_a_private_file_not_the_command_line(
    tmp_path: Path,
) -> None:
    spec = JobSpec.model_validate(PI | {"conf": {"spark.hadoop.fs.s3a.secret.key": SECRET}})
    stamp = datetime.now(UTC)
    job = Job(
        1,
        "pi",
        JobState.ADMITTED,
        spec,
        "u",
        None,
        stamp,
        stamp,
        stamp,
        None,
        None,
        1,
        None,
        None,
        None,
        False,
    )
    backend = SparkBackend(ClusterConfig("local", "local", "local[*]"), {}, None)
    command = backend.driver_command(LaunchRequest(job, 1, tmp_path, lambda ref, _field: ref))
    assert all(SECRET not in arg for arg in command.argv)
    properties = tmp_path / "spark.properties"
    assert command.argv[command.argv.index("--properties-file") + 1] == str(properties)
    assert properties.stat().st_mode & 0o777 == 0o600
    assert f"spark.hadoop.fs.s3a.secret.key={SECRET}" in properties.read_text()


def test_oversized_requests_are_refused_with_413(policed: tuple[ChidoriServer, str]) -> None:
    server, token = policed
    body = PI | {"args": ["x" * 60000] * 20}
    with server.client(token) as client:
        response = client.post("/api/v1/jobs", json=body)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_responses_carry_security_headers(policed: tuple[ChidoriServer, str]) -> None:
    server, _ = policed
    response = httpx.get(f"{server.url}/healthz")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


def test_errors_never_carry_a_stack_trace(policed: tuple[ChidoriServer, str]) -> None:
    server, token = policed
    with server.client(token) as client:
        for response in (
            client.post(
                "/api/v1/jobs", content=b"\xff\xfe", headers={"content-type": "application/json"}
            ),
            client.get("/api/v1/jobs", params={"created_after": "not a date"}),
            client.post(
                "/api/v1/uploads",
                content=b"--x\r\n",
                headers={"content-type": "multipart/form-data; boundary=x"},
            ),
        ):
            assert 400 <= response.status_code < 500, response.text
            assert "Traceback" not in response.text and 'File "' not in response.text


def test_submissions_over_the_rate_limit_get_429(tmp_path: Path) -> None:
    config = tmp_path / "chidori.yaml"
    config.write_text("security:\n  submit_rate_per_second: 1\n  submit_burst: 3\n")
    env = {"CHIDORI_MAX_RUNNING_JOBS": "0"}
    with (
        ChidoriServer(tmp_path / "home", config=config, env=env) as server,
        server.client() as client,
    ):
        statuses = [client.post("/api/v1/jobs", json=TRAIN).status_code for _ in range(5)]
        assert statuses[:3] == [201, 201, 201] and 429 in statuses[3:]
        limited = client.post("/api/v1/jobs", json=TRAIN)
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        stored = client.get("/api/v1/jobs").json()["items"]
        assert len(stored) == statuses.count(201)
