"""Spark's standalone REST submission protocol: a stock `spark-submit --deploy-mode cluster`
(from the installed pyspark) submits, kills and reads the status of Chidori jobs; errors answer
Spark's ErrorResponse; the listener admits callers by network and, if configured, by JWS."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import pytest

from chidori.api.jws import JwsError, verify_jws
from chidori.api.spark_rest import Network, SparkRestOptions, check_spark_rest
from chidori.api.spark_rest_messages import (
    CreateSubmissionRequest,
    parse_submission_id,
    spec_from_request,
    submission_id,
)
from chidori.config import ConfigError
from chidori.domain.errors import InvalidRequest
from chidori.domain.identity import Role
from chidori.domain.policy import PolicyDoc
from chidori.domain.records import Job
from chidori.domain.spec import JobSpec
from chidori.domain.states import JobState
from chidori.services.identity import IdentityService
from chidori.store import open_database
from chidori.store.identity import IdentityStore
from tests.conftest import unavailable
from tests.server import REPO, ChidoriServer, add_spark_rest_user, free_port

REST_USER = "spark-submitter"


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


def spark_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHIDORI_")}
    env.update(
        SPARK_HOME=str(spark_home()), SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=sys.executable
    )
    return env


def spark_submit(*args: str) -> subprocess.CompletedProcess[str]:
    """The stock client from the installed pyspark; output is stdout and stderr together."""
    return subprocess.run(
        [str(spark_home() / "bin" / "spark-submit"), *args],
        env=spark_env(),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def create_request(app_resource: str, main_class: str, *app_args: str, **props: str) -> Any:
    """A CreateSubmissionRequest as spark-submit sends it (with the properties it always sets)."""
    return {
        "action": "CreateSubmissionRequest",
        "clientSparkVersion": "4.3.0",
        "appResource": app_resource,
        "mainClass": main_class,
        "appArgs": list(app_args),
        "environmentVariables": {"SPARK_SCALA_VERSION": "2.13"},
        "sparkProperties": {
            "spark.master": "spark://127.0.0.1:6066",
            "spark.submit.deployMode": "cluster",
            "spark.driver.supervise": "false",
            "spark.master.rest.enabled": "true",
            "spark.app.submitTime": "1795871721266",
            "spark.submit.pyFiles": "",
            **props,
        },
    }


def assert_error_response(response: httpx.Response, status: int, text: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["action"] == "ErrorResponse" and body["serverSparkVersion"], body
    assert text in body["message"], body


# ---- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def jar_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/java/JavaPi.java compiled against pyspark's jars into javapi.jar."""
    javac, jar = shutil.which("javac"), shutil.which("jar")
    if javac is None or jar is None:
        unavailable("a JDK (javac and jar)", "not on PATH")
    assert javac is not None and jar is not None
    folder = tmp_path_factory.mktemp("javapi")
    folder.chmod(0o755)  # an app root: sandboxed jobs (their own uids) must read it
    classes = folder / "classes"
    classes.mkdir()
    source = REPO / "examples" / "java" / "JavaPi.java"
    classpath = str(spark_home() / "jars" / "*")
    subprocess.run([javac, "-cp", classpath, "-d", str(classes), str(source)], check=True)
    subprocess.run([jar, "cf", str(folder / "javapi.jar"), "-C", str(classes), "."], check=True)
    return folder


@pytest.fixture(scope="module")
def rest(tmp_path_factory: pytest.TempPathFactory, jar_dir: Path) -> Iterator[ChidoriServer]:
    """One server for the module, its REST listener running jobs as a plain (non-admin) user,
    so nothing passes only because admins are exempt from the conf policy."""
    server = ChidoriServer(
        tmp_path_factory.mktemp("spark-rest"),
        app_roots=[REPO, jar_dir],
        spark_rest_port=free_port(),
        env={"CHIDORI_SPARK_REST_ALLOWED_NETWORKS": "127.0.0.1/32"},
    )
    add_spark_rest_user(server, REST_USER)
    with server:
        yield server


def rest_url(server: ChidoriServer) -> str:
    assert server.spark_rest_url is not None
    return server.spark_rest_url


def job_of(submission: str) -> int:
    parsed = parse_submission_id(submission)
    assert parsed is not None, submission
    return parsed[0]


# ---- through the stock client -------------------------------------------------------------------


@pytest.mark.spark
def test_stock_spark_submit_in_cluster_mode_runs_a_java_app(
    rest: ChidoriServer, jar_dir: Path
) -> None:
    port = rest.spark_rest_port
    result = spark_submit(
        "--master", f"spark://127.0.0.1:{port}", "--deploy-mode", "cluster",
        "--conf", "spark.master.rest.enabled=true", "--conf", "spark.sql.shuffle.partitions=3",
        "--class", "JavaPi", "--name", "javapi-rest", "--driver-memory", "768m",
        str(jar_dir / "javapi.jar"), "2",
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    found = re.search(r"Submission successfully created as (driver-\d{14}-\d{4,})", output)
    assert found, output
    job_id = job_of(found.group(1))
    job = rest.wait(job_id)
    assert job["state"] == "SUCCEEDED", rest.log(job_id)
    assert "Pi is roughly 3.1" in rest.log(job_id)
    assert job["name"] == "javapi-rest" and job["user"] == REST_USER
    assert job["labels"] == {"submitted-through": "spark-rest"}
    spec = job["spec"]
    assert spec["main_class"] == "JavaPi" and spec["args"] == ["2"]
    assert spec["application"] == str(jar_dir / "javapi.jar") and spec["jars"] == []
    assert spec["driver_memory"] == "768m" and spec["cluster"] == "local"
    # What the client always sends about Spark's master is dropped, the rest kept as conf.
    assert spec["conf"] == {"spark.sql.shuffle.partitions": "3"}


@pytest.mark.spark
def test_status_answers_like_sparks_master_and_spark_submit_kill_cancels(
    rest: ChidoriServer, jar_dir: Path
) -> None:
    url = rest_url(rest)
    request = create_request(f"file:{jar_dir / 'javapi.jar'}", "JavaPi", "2", "600")
    created = httpx.post(f"{url}/v1/submissions/create", json=request)
    assert created.status_code == 200, created.text
    body = created.json()
    assert body["action"] == "CreateSubmissionResponse" and body["success"] is True
    submission = body["submissionId"]
    assert body["message"] == f"Driver successfully submitted as {submission}"
    assert body["serverSparkVersion"] == version("pyspark")
    job_id = job_of(submission)
    rest.wait(job_id, until={"RUNNING"}, timeout=60)

    status = httpx.get(f"{url}/v1/submissions/status/{submission}").json()
    assert status["action"] == "SubmissionStatusResponse" and status["success"] is True
    assert status["submissionId"] == submission and status["driverState"] == "RUNNING"
    assert status["serverSparkVersion"] and status["workerId"] and status["workerHostPort"]

    result = spark_submit(
        "--master", f"spark://127.0.0.1:{rest.spark_rest_port}",
        "--conf", "spark.master.rest.enabled=true", "--kill", submission,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{submission} is killed successfully" in result.stdout + result.stderr
    assert rest.wait(job_id, timeout=60)["state"] == "CANCELLED"

    killed = httpx.get(f"{url}/v1/submissions/status/{submission}").json()
    assert killed["driverState"] == "KILLED" and killed["success"] is True
    again = httpx.post(f"{url}/v1/submissions/kill/{submission}").json()
    assert again == {
        "action": "KillSubmissionResponse",
        "serverSparkVersion": status["serverSparkVersion"],
        "submissionId": submission,
        "success": False,
        "message": f"Driver {submission} has already finished or does not exist",
    }


@pytest.mark.spark
def test_a_python_app_posted_as_json_runs(rest: ChidoriServer) -> None:
    url = rest_url(rest)
    request = create_request(
        "examples/pi.py",
        "org.apache.spark.deploy.PythonRunner",
        "examples/pi.py",
        "2",
        **{"spark.app.name": "python-through-rest"},
    )
    created = httpx.post(f"{url}/v1/submissions/create", json=request)
    assert created.status_code == 200 and created.json()["success"] is True, created.text
    job_id = job_of(created.json()["submissionId"])
    job = rest.wait(job_id)
    assert job["state"] == "SUCCEEDED", rest.log(job_id)
    assert job["spec"]["application"] == "examples/pi.py" and job["spec"]["args"] == ["2"]
    assert job["spec"]["main_class"] is None and job["name"] == "python-through-rest"
    assert "Pi is roughly 3.1" in rest.log(job_id)
    finished = httpx.get(f"{url}/v1/submissions/status/{created.json()['submissionId']}").json()
    assert finished["driverState"] == "FINISHED"


# ---- errors -------------------------------------------------------------------------------------


def test_bad_requests_answer_spark_error_responses(rest: ChidoriServer) -> None:
    url = rest_url(rest)
    create = f"{url}/v1/submissions/create"
    headers = {"Content-Type": "application/json"}
    assert_error_response(
        httpx.post(create, content=b"{bad", headers=headers), 400, "Malformed request"
    )
    assert_error_response(
        httpx.post(create, json={"action": "KillSubmissionRequest"}),
        400,
        "expected action CreateSubmissionRequest",
    )
    assert_error_response(httpx.post(create, json=[1]), 400, "Action field not found")
    missing = create_request("x.jar", "X")
    del missing["mainClass"], missing["appResource"]
    response = httpx.post(create, json=missing)
    assert_error_response(response, 400, "appResource: field required")
    assert "mainClass: field required" in response.json()["message"]
    assert_error_response(
        httpx.post(create, json=create_request("file:/etc/passwd", "X")),
        400,
        "appResource: '/etc/passwd' is outside the allowed application roots",
    )
    assert_error_response(
        httpx.post(create, json=create_request("x.py", "org.apache.spark.deploy.PythonRunner")),
        400,
        "needs the Python file",
    )
    assert_error_response(
        httpx.post(
            create, json=create_request("examples/pi.py", "X", **{"spark.driver.memory": "lots"})
        ),
        400,
        "sparkProperties.spark.driver.memory: 'lots' is not a size",
    )
    # The policy still applies to the conf that is kept (the run-as user is no admin).
    assert_error_response(
        httpx.post(
            create,
            json=create_request(
                "examples/pi.py", "X", **{"spark.driver.extraJavaOptions": "-Dx=1"}
            ),
        ),
        400,
        "sparkProperties.spark.driver.extraJavaOptions: may not be set",
    )
    assert_error_response(httpx.get(create), 405, "HTTP method GET is not supported")
    assert_error_response(httpx.get(f"{url}/v1/submissions/status/"), 400, "Submission ID is")
    assert_error_response(httpx.post(f"{url}/v1/submissions/kill"), 400, "Submission ID is")
    assert_error_response(httpx.get(f"{url}/"), 400, "Missing protocol version.")
    assert_error_response(httpx.get(f"{url}/v1/submissions/nope"), 400, "Missing an action")
    version = httpx.get(f"{url}/v9/submissions/create")
    assert_error_response(version, 468, "Unknown protocol version 'v9'")
    assert version.json()["highestProtocolVersion"] == "v1"

    for unknown in ("driver-20200101000000-987654", "driver-x", "not-a-driver-id"):
        status = httpx.get(f"{url}/v1/submissions/status/{unknown}")
        assert status.status_code == 200
        assert status.json()["success"] is False and "driverState" not in status.json()
        kill = httpx.post(f"{url}/v1/submissions/kill/{unknown}")
        assert kill.status_code == 200 and kill.json()["success"] is False
    ready = httpx.get(f"{url}/v1/submissions/readyz").json()
    assert ready["action"] == "ReadyzResponse" and ready["success"] is True


def test_jobs_submitted_elsewhere_are_out_of_reach(rest: ChidoriServer) -> None:
    """The listener has no per-caller identity: it can only see and kill its own jobs, which
    the server marks itself; the label it shows is not what it trusts."""
    job = rest.submit(
        application="tests/jobs/sleeper.py",
        kind="python",
        args=["600"],
        labels={"submitted-through": "spark-rest"},
    )
    with rest.client() as client:
        created_at = client.get(f"/api/v1/jobs/{job['id']}").json()["created_at"]
    stamp = datetime.fromisoformat(created_at.replace("Z", "+00:00")).strftime("%Y%m%d%H%M%S")
    submission = f"driver-{stamp}-{job['id']:04d}"
    url = rest_url(rest)
    try:
        assert httpx.get(f"{url}/v1/submissions/status/{submission}").json()["success"] is False
        assert httpx.post(f"{url}/v1/submissions/kill/{submission}").json()["success"] is False
        assert httpx.post(f"{url}/v1/submissions/killall").json()["success"] is True
        with rest.client() as client:
            assert client.get(f"/api/v1/jobs/{job['id']}").json()["cancel_requested"] is False
    finally:
        with rest.client() as client:
            client.delete(f"/api/v1/jobs/{job['id']}")


# ---- admission: networks, JWS, run-as user ------------------------------------------------------


def test_callers_outside_the_allowed_networks_get_403(tmp_path: Path) -> None:
    server = ChidoriServer(
        tmp_path / "home",
        spark_rest_port=free_port(),
        env={
            "CHIDORI_SPARK_REST_ALLOWED_NETWORKS": "10.0.0.0/8, fd00::/8",
            "CHIDORI_SPARK_REST_JWS_SECRET": b64url(os.urandom(32)),
        },
    )
    with server:
        url = rest_url(server)
        assert_error_response(httpx.get(f"{url}/v1/submissions/readyz"), 403, "not allowed")
        assert_error_response(
            httpx.post(f"{url}/v1/submissions/create", json=create_request("x.jar", "X")),
            403,
            "not allowed",
        )
        # The main API is not affected, and the scheduler's lifespan ran once (the main app's).
        assert httpx.get(f"{server.url}/readyz").status_code == 200
        assert server.server_log().count("Application startup complete") == 1


def test_an_unknown_run_as_user_stops_the_start(tmp_path: Path) -> None:
    server = ChidoriServer(
        tmp_path / "home",
        spark_rest_port=free_port(),
        env={
            "CHIDORI_SPARK_REST_USER": "nobody-here",
            "CHIDORI_SPARK_REST_ALLOWED_NETWORKS": "127.0.0.1/32",
        },
    )
    with pytest.raises(RuntimeError, match="CHIDORI_SPARK_REST_USER"):
        server.start(timeout=30)
    server.stop()


def test_the_listener_refuses_to_start_open_to_anyone(tmp_path: Path) -> None:
    """Nothing configured: every local process (each job's driver) could submit, unasked."""
    server = ChidoriServer(tmp_path / "home", spark_rest_port=free_port())
    with pytest.raises(RuntimeError, match="needs allowed_networks"):
        server.start(timeout=30)
    server.stop()


LOOPBACK = (ipaddress.ip_network("127.0.0.1/32"),)


# (run as, allowed networks, JWS secret) -> why the listener refuses (None: it starts)
START_CASES: list[tuple[str, tuple[Network, ...], bytes | None, str | None]] = [
    # Open to every local process with no token.
    ("plain", (), None, "needs allowed_networks"),
    # No run-as user: jobs would run as the bootstrap admin, exempt from the policy.
    ("", LOOPBACK, None, "must name a user"),
    # An admin, with no token to say the callers are trusted.
    ("admin", LOOPBACK, None, "is an admin"),
    ("boss", LOOPBACK, None, "is an admin"),
    ("ghost", LOOPBACK, None, "create the user first"),
    # What may start: a plain user behind networks, anyone behind a secret.
    ("plain", LOOPBACK, None, None),
    ("", (), b"k" * 32, None),
    ("boss", LOOPBACK, b"k" * 32, None),
]


def test_what_the_listener_may_start_with(tmp_path: Path) -> None:
    store = open_database(f"sqlite:///{tmp_path / 'chidori.db'}")
    try:
        store.migrate()
        identity = IdentityService(IdentityStore(store), "bootstrap-token", PolicyDoc())
        identity.bootstrap()
        IdentityStore(store).ensure_user("plain", Role.USER)
        IdentityStore(store).ensure_user("boss", Role.ADMIN)
        for run_as, networks, secret, refusal in START_CASES:
            options = SparkRestOptions(run_as, networks, secret, "4.0.0")
            if refusal is None:
                check_spark_rest(identity, options)
                continue
            with pytest.raises(ConfigError, match=refusal):
                check_spark_rest(identity, options)
    finally:
        store.dispose()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_jws(key: bytes, claims: dict[str, Any], alg: str = "HS256") -> str:
    header = b64url(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    payload = b64url(json.dumps(claims).encode())
    digest = {"HS256": hashlib.sha256, "HS512": hashlib.sha512}[alg]
    signature = hmac.new(key, f"{header}.{payload}".encode(), digest).digest()
    return f"{header}.{payload}.{b64url(signature)}"


def test_a_jws_bearer_is_required_when_a_secret_is_set(tmp_path: Path, jar_dir: Path) -> None:
    key = os.urandom(32)
    server = ChidoriServer(
        tmp_path / "home",
        app_roots=[REPO, jar_dir],
        spark_rest_port=free_port(),
        env={"CHIDORI_SPARK_REST_JWS_SECRET": b64url(key)},
    )
    with server:
        url = rest_url(server)
        readyz = f"{url}/v1/submissions/readyz"
        assert_error_response(httpx.get(readyz), 403, "Authorization header is missing.")
        for bad in (
            "Basic eDp5",
            "Bearer not.a.jws",
            f"Bearer {make_jws(os.urandom(32), {'sub': 'x'})}",
            f"Bearer {make_jws(key, {'exp': time.time() - 10})}",
            "Bearer " + b64url(b'{"alg":"none"}') + "." + b64url(b"{}") + ".",
        ):
            assert httpx.get(readyz, headers={"Authorization": bad}).status_code == 403, bad
        good = {"Authorization": f"Bearer {make_jws(key, {'sub': 'ci', 'exp': time.time() + 60})}"}
        assert httpx.get(readyz, headers=good).json()["success"] is True
        request = create_request(f"file:{jar_dir / 'javapi.jar'}", "JavaPi", "2", "600")
        created = httpx.post(f"{url}/v1/submissions/create", json=request, headers=good)
        assert created.status_code == 200 and created.json()["success"] is True, created.text
        submission = created.json()["submissionId"]
        killed = httpx.post(f"{url}/v1/submissions/killall", headers=good).json()
        assert killed["action"] == "KillAllSubmissionResponse" and killed["success"] is True
        assert server.wait(job_of(submission), timeout=60)["state"] == "CANCELLED"
        cleared = httpx.post(f"{url}/v1/submissions/clear", headers=good).json()
        assert cleared["action"] == "ClearResponse" and cleared["success"] is True


# ---- the pieces, without a server ---------------------------------------------------------------


def test_jws_verification_follows_jjwt() -> None:
    key = os.urandom(64)
    assert verify_jws(make_jws(key, {"sub": "a"}), key) == {"sub": "a"}
    assert verify_jws(make_jws(key, {"sub": "a"}, "HS512"), key)["sub"] == "a"
    with pytest.raises(JwsError, match="too short"):
        verify_jws(make_jws(key[:32], {}, "HS512"), key[:32])
    with pytest.raises(JwsError, match="not valid yet"):
        verify_jws(make_jws(key, {"nbf": time.time() + 60}), key)
    token = make_jws(key, {"sub": "a"})
    header, _payload, signature = token.split(".")
    forged = b64url(json.dumps({"sub": "b"}).encode())
    with pytest.raises(JwsError, match="signature"):
        verify_jws(f"{header}.{forged}.{signature}", key)


def test_submission_ids_look_like_sparks_and_map_back() -> None:
    spec = JobSpec(application="a.jar")
    job = Job(
        id=7, name="a", state=JobState.QUEUED, spec=spec, owner="u", team=None,
        created_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), updated_at=datetime.now(UTC),
        admitted_at=None, started_at=None, finished_at=None, attempts=0, reason=None,
        spark_app_id=None, exit_code=None, cancel_requested=False,
    )  # fmt: skip
    assert submission_id(job) == "driver-20260102030405-0007"
    assert parse_submission_id("driver-20260102030405-0007") == (7, "20260102030405")
    assert parse_submission_id("driver-2026-7") is None


def test_a_request_maps_onto_a_job_spec() -> None:
    request = CreateSubmissionRequest.model_validate(
        create_request(
            "file:/apps/main.jar", "com.example.Main", "in", "out",
            **{
                "spark.jars": "file:/apps/main.jar,file:///apps/dep.jar",
                "spark.app.name": "nightly", "spark.driver.memory": "2g",
                "spark.driver.cores": "2", "spark.executor.memory": "3g",
                "spark.executor.cores": "2", "spark.executor.instances": "4",
                "spark.chidori.cluster": "big", "spark.chidori.queue": "etl",
                "spark.sql.shuffle.partitions": "8",
            },
        )
    )  # fmt: skip
    spec = spec_from_request(request, "local")
    assert spec.application == "/apps/main.jar" and spec.jars == ["/apps/dep.jar"]
    assert spec.main_class == "com.example.Main" and spec.args == ["in", "out"]
    assert (spec.name, spec.driver_memory, spec.driver_cores) == ("nightly", "2g", 2)
    assert (spec.executor_memory, spec.executor_cores, spec.executor_instances) == ("3g", 2, 4)
    assert (spec.cluster, spec.queue) == ("big", "etl")
    assert spec.conf == {"spark.sql.shuffle.partitions": "8"}
    assert spec.labels == {"submitted-through": "spark-rest"}
    extra = CreateSubmissionRequest.model_validate({**create_request("a.jar", "X"), "more": 1})
    assert extra.model_extra == {"more": 1}  # answered as unknownFields
    with pytest.raises(InvalidRequest, match="names another host"):
        spec_from_request(
            CreateSubmissionRequest.model_validate(create_request("file://h/a.jar", "X")), "local"
        )


def test_total_executor_cores_becomes_executors() -> None:
    """spark-submit --total-executor-cores sends spark.cores.max, which job conf may not
    carry (the policy caps and admission count the spec's fields): it becomes executors."""

    def spec_with(properties: dict[str, str]) -> JobSpec:
        request = CreateSubmissionRequest.model_validate(
            {
                "action": "CreateSubmissionRequest",
                "appResource": "file:/opt/app.jar",
                "mainClass": "App",
                "appArgs": [],
                "clientSparkVersion": "4.3.0",
                "environmentVariables": {},
                "sparkProperties": properties,
            }
        )
        return spec_from_request(request, "local")

    assert spec_with({"spark.cores.max": "5", "spark.executor.cores": "2"}).executor_instances == 3
    assert spec_with({"spark.cores.max": "4"}).executor_instances == 4
    spec = spec_with({"spark.cores.max": "8", "spark.executor.instances": "2"})
    assert spec.executor_instances == 2 and "spark.cores.max" not in spec.conf
    with pytest.raises(InvalidRequest) as error:
        spec_with({"spark.cores.max": "lots"})
    assert error.value.fields[0].field == "sparkProperties.spark.cores.max"
