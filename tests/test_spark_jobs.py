"""Real Spark jobs, end to end: spark-submit from the installed pyspark, driver hosted by
Chidori. The jobs are submitted together and share one server, to keep the suite fast."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from chidori.host.processes import tagged_processes
from tests.server import REPO, ChidoriServer
from tests.standalone import standalone_cluster

pytestmark = pytest.mark.spark


def cli(
    server: ChidoriServer, *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, CHIDORI_URL=server.url, CHIDORI_TOKEN=server.token)
    return subprocess.run(
        [sys.executable, "-m", "chidori", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def spark_jobs(server: ChidoriServer) -> dict[str, dict[str, Any]]:
    """Submit the REST-API jobs up front so they run while the CLI tests run."""
    return {
        "pi": server.submit(
            application="examples/pi.py", name="pi-rest", schema="demo", table="pi"
        ),
        "fail": server.submit(application="examples/fail.py", name="fail"),
    }


def test_pi_through_the_rest_api_succeeds(
    server: ChidoriServer, spark_jobs: dict[str, Any]
) -> None:
    done = server.wait(spark_jobs["pi"]["id"])
    assert done["state"] == "SUCCEEDED", done
    assert str(done["spark_app_id"]).startswith("local-")
    log = server.log(done["id"])
    assert "Pi is roughly 3.1" in log
    assert f"eventlog_v2_{done['spark_app_id']}" in log  # event log written for the History Server


def test_failing_example_ends_failed_with_the_error_in_log_and_reason(
    server: ChidoriServer, spark_jobs: dict[str, Any]
) -> None:
    done = server.wait(spark_jobs["fail"]["id"])
    assert done["state"] == "FAILED" and done["exit_code"] == 1
    assert "ValueError: fail.py failed on purpose" in done["reason"]
    assert "Traceback" in server.log(done["id"])


def test_pi_through_chidori_submit_wait(server: ChidoriServer, spark_jobs: dict[str, Any]) -> None:
    result = cli(server, "submit", "--name", "pi-cli", "--wait", "examples/pi.py", "2")
    assert result.returncode == 0, result.stderr
    job_id = int(result.stdout.strip())
    assert "SUCCEEDED" in result.stderr
    assert "Pi is roughly 3.1" in server.log(job_id)
    with server.client() as client:
        spec = client.get(f"/api/v1/jobs/{job_id}").json()["spec"]
    assert spec["application"].startswith("upload://")  # the CLI uploaded the local file
    assert spec["args"] == ["2"]


def test_wordcount_with_a_shipped_file_through_chidori_submit_follow(server: ChidoriServer) -> None:
    result = cli(
        server,
        "submit",
        "--files",
        "examples/data/words.txt",
        "--follow",
        "examples/wordcount.py",
        "words.txt",
    )
    assert result.returncode == 0, result.stderr
    assert "total words:" in result.stdout  # the driver log, streamed


def test_failing_example_through_chidori_submit_wait_exits_non_zero(server: ChidoriServer) -> None:
    result = cli(server, "submit", "--wait", "examples/fail.py")
    assert result.returncode == 1
    assert "failed on purpose" in result.stderr


def test_cancelling_a_running_spark_job_leaves_no_process(server: ChidoriServer) -> None:
    job = server.submit(application="tests/jobs/spark_sleep.py", name="sleepy")
    deadline = time.monotonic() + 180
    while "session ready" not in server.log(job["id"]):
        assert time.monotonic() < deadline, server.log(job["id"])
        time.sleep(0.5)
    assert len(tagged_processes(job["id"])) >= 2  # the JVM and the Python driver at least
    started = time.monotonic()
    with server.client() as client:
        client.delete(f"/api/v1/jobs/{job['id']}")
    done = server.wait(job["id"], timeout=60)
    assert done["state"] == "CANCELLED"
    assert time.monotonic() - started < 15
    assert tagged_processes(job["id"]) == []


@pytest.fixture(scope="module")
def standalone_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChidoriServer]:
    work = tmp_path_factory.mktemp("standalone")
    with standalone_cluster(work / "cluster") as cluster:
        config = work / "chidori.yaml"
        config.write_text(
            f"clusters:\n  lab:\n    type: standalone\n    master: {cluster.master_url}\n"
        )
        with ChidoriServer(work / "home", config=config) as server:
            yield server


def test_pi_on_a_real_standalone_master_succeeds(standalone_server: ChidoriServer) -> None:
    job = standalone_server.submit(
        application="examples/pi.py", cluster="lab", executor_instances=1, executor_memory="512m"
    )
    done = standalone_server.wait(job["id"])
    assert done["state"] == "SUCCEEDED", standalone_server.log(job["id"])
    assert str(done["spark_app_id"]).startswith("app-")
    assert "Pi is roughly 3.1" in standalone_server.log(job["id"])


def test_unknown_cluster_lists_the_configured_ones(standalone_server: ChidoriServer) -> None:
    with standalone_server.client() as client:
        response = client.post(
            "/api/v1/jobs", json={"application": "examples/pi.py", "cluster": "x"}
        )
    assert response.status_code == 422
    assert "known: lab, local" in response.json()["error"]["fields"][0]["message"]
