"""The `databricks` cluster type through the official databricks-sdk, against a fake of the
Jobs API at the HTTP boundary (tests/fakes/databricks_jobs.py, built from the published
definitions). Not verified against the live service.

The backend alone: the one-time run it submits (python, jar and wheel tasks; new or existing
cluster; the idempotency token), every life_cycle_state and result_state, cancel, the run
output, an idempotent re-submission, a quota refusal. Then a real Chidori server with a
databricks cluster: a job succeeds with the run's output in its log and the run page on its
attempt; a quota refusal waits and then runs; a cancel stops the run; a server killed
mid-run and started again watches the same run instead of submitting again.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from databricks.sdk.service.jobs import RunLifeCycleState, RunResultState

from chidori.backends.databricks import (
    LIFE_CYCLE_STATES,
    RESULT_STATES,
    DatabricksBackend,
    databricks_state,
)
from chidori.backends.remote import QuotaRefused, RemoteState, RemoteSubmission
from chidori.config import ClusterConfig, _cluster
from chidori.domain.errors import BackendError, InvalidRequest
from chidori.domain.records import Job
from chidori.domain.spec import JobSpec
from chidori.domain.states import JobState
from tests.fakes.databricks_jobs import FakeDatabricks, serve_fake_databricks
from tests.server import ChidoriServer
from tests.test_ui_login import sign_in

TOKEN = "dapi-fake-token"
NEW_CLUSTER = {"spark_version": "15.4.x-scala2.12", "node_type_id": "i3.xlarge"}
FAST_RETRIES = {"retry_seconds": 1}  # the SDK gives up on a throttled call after 1 s


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeDatabricks]:
    with serve_fake_databricks(TOKEN) as running:
        yield running


def _cluster_of(fake: FakeDatabricks, **options: Any) -> ClusterConfig:
    return _cluster(
        "dbx",
        {
            "type": "databricks",
            "url": fake.url,
            "token_env": "DBX_TOKEN",
            "conf": {"spark.sql.shuffle.partitions": "8"},
            "options": {**(options or NEW_CLUSTER), **FAST_RETRIES},
        },
    )


def _backend(fake: FakeDatabricks, **options: Any) -> DatabricksBackend:
    cluster = _cluster_of(fake, **options)
    assert cluster.remote is not None
    return DatabricksBackend(cluster, cluster.remote, TOKEN)


def _job(job_id: int = 7, **spec: Any) -> Job:
    now = datetime.now(UTC)
    fields = {"application": "dbfs:/apps/pi.py", "cluster": "dbx", **spec}
    return Job(
        job_id, "j", JobState.ADMITTED, JobSpec.model_validate(fields), "alice", None,
        now, now, None, None, None, 1, None, None, None, False,
    )  # fmt: skip


def test_a_python_job_is_one_run_on_a_new_job_cluster_with_the_attempts_token(
    fake: FakeDatabricks,
) -> None:
    backend = _backend(fake)
    job = _job(args=["4"], executor_instances=3, conf={"spark.eventLog.enabled": "false"})
    run = backend.submit(RemoteSubmission(job, 1, "chidori-7-1-abc"))
    body = fake.runs[int(run.run_id)].body
    assert body["idempotency_token"] == body["run_name"] == "chidori-7-1-abc"
    (task,) = body["tasks"]
    assert task["spark_python_task"] == {"python_file": "dbfs:/apps/pi.py", "parameters": ["4"]}
    assert task["new_cluster"] == {
        **NEW_CLUSTER,
        "num_workers": 3,
        "spark_conf": {"spark.sql.shuffle.partitions": "8", "spark.eventLog.enabled": "false"},
    }
    assert run.url is not None and run.url.endswith(f"/run/{run.run_id}")


def test_jar_and_wheel_tasks_and_an_existing_cluster(fake: FakeDatabricks) -> None:
    backend = _backend(fake, existing_cluster_id="0101-abc")
    jar = _job(application="dbfs:/apps/etl.jar", main_class="com.example.Etl", jars=["dbfs:/x.jar"])
    task = fake.runs[int(backend.submit(RemoteSubmission(jar, 1, "k-jar")).run_id)].body["tasks"][0]
    assert task["spark_jar_task"] == {"main_class_name": "com.example.Etl"}
    assert task["libraries"] == [{"jar": "dbfs:/apps/etl.jar"}, {"jar": "dbfs:/x.jar"}]
    assert task["existing_cluster_id"] == "0101-abc" and "new_cluster" not in task
    wheel = _job(application="/Volumes/w/pkg-1.0-py3-none-any.whl", main_class="pkg:main")
    task = fake.runs[int(backend.submit(RemoteSubmission(wheel, 1, "k-whl")).run_id)].body["tasks"][
        0
    ]
    assert task["python_wheel_task"] == {"package_name": "pkg", "entry_point": "main"}
    with pytest.raises(InvalidRequest, match="package_name:entry_point"):
        backend.check_spec(_job(application="/Volumes/w/p.whl").spec)
    with pytest.raises(InvalidRequest, match="uploaded"):
        backend.check_spec(_job(application="upload://" + "0" * 64 + "/a.py").spec)


def test_every_life_cycle_and_result_state_of_the_sdk_is_mapped() -> None:
    assert set(LIFE_CYCLE_STATES) == {s.value for s in RunLifeCycleState}
    assert set(RESULT_STATES) == {s.value for s in RunResultState}
    with pytest.raises(BackendError, match="unknown life_cycle_state"):
        databricks_state("LEVITATING", None)
    with pytest.raises(BackendError, match="unknown result_state"):
        databricks_state("TERMINATED", None)


Step = tuple[str, str | None]
EXPECTED: dict[Step, RemoteState] = {
    ("QUEUED", None): RemoteState.PENDING,
    ("PENDING", None): RemoteState.PENDING,
    ("BLOCKED", None): RemoteState.PENDING,
    ("WAITING_FOR_RETRY", None): RemoteState.PENDING,
    ("RUNNING", None): RemoteState.RUNNING,
    ("TERMINATING", None): RemoteState.RUNNING,
    ("SKIPPED", None): RemoteState.FAILED,
    ("INTERNAL_ERROR", None): RemoteState.FAILED,
    **{("TERMINATED", result): state for result, state in RESULT_STATES.items()},
}


def test_each_state_the_service_answers_is_read_through_the_sdk(fake: FakeDatabricks) -> None:
    backend = _backend(fake)
    script: list[Step] = [("PENDING", None), *EXPECTED]  # the submission reads the first
    fake.scripts.append(script)
    run = backend.submit(RemoteSubmission(_job(), 1, "k-states"))
    seen = [backend.status(run.run_id).state for _ in EXPECTED]
    assert seen == list(EXPECTED.values())
    assert {"SUCCEEDED", "FAILED", "CANCELLED", "PENDING", "RUNNING"} == {s.value for s in seen}


def test_cancel_output_and_an_idempotent_resubmission(fake: FakeDatabricks) -> None:
    backend = _backend(fake)
    fake.scripts.append([("RUNNING", None)])
    job = _job(job_id=8)
    first = backend.submit(RemoteSubmission(job, 1, "chidori-8-1-x"))
    before = len(fake.runs)
    again = backend.submit(RemoteSubmission(job, 1, "chidori-8-1-x", maybe_submitted=True))
    assert again.run_id == first.run_id and len(fake.runs) == before
    assert backend.logs(first.run_id, 0, final=False).lines == []  # output comes at the end
    backend.cancel(first.run_id)
    status = backend.status(first.run_id)
    assert status.state is RemoteState.CANCELLED and status.service_state == "TERMINATED/CANCELED"
    page = backend.logs(first.run_id, 0, final=True)
    assert page.lines == ["hello from the fake driver", "Pi is roughly 3.14"]
    assert backend.logs(first.run_id, 1, final=True).lines == ["Pi is roughly 3.14"]


def test_a_quota_refusal_is_told_apart(fake: FakeDatabricks) -> None:
    fake.refuse_quota = True  # the SDK retries throttled calls a while, then gives up
    try:
        with pytest.raises(QuotaRefused, match="quota"):
            _backend(fake).submit(RemoteSubmission(_job(job_id=9), 1, "k-quota"))
    finally:
        fake.refuse_quota = False


# ---- a Chidori server with a databricks cluster ----------------------------------------------


@pytest.fixture(scope="module")
def server(
    fake: FakeDatabricks, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ChidoriServer]:
    home = tmp_path_factory.mktemp("databricks-server")
    config = home.parent / f"{home.name}.yaml"
    config.write_text(
        "clusters:\n  dbx:\n    type: databricks\n"
        f"    url: {fake.url}\n    token_env: DBX_TOKEN\n    poll_seconds: 0.3\n"
        "    options:\n      spark_version: 15.4.x-scala2.12\n      node_type_id: i3.xlarge\n"
        "      retry_seconds: 1\n"
    )
    with ChidoriServer(home, config=config, env={"DBX_TOKEN": TOKEN}) as running:
        yield running


def _job_json(server: ChidoriServer, job_id: int) -> dict[str, Any]:
    with server.client() as client:
        job: dict[str, Any] = client.get(f"/api/v1/jobs/{job_id}").json()
        return job


def _attempts(server: ChidoriServer, job_id: int) -> list[dict[str, Any]]:
    with server.client() as client:
        items: list[dict[str, Any]] = client.get(f"/api/v1/jobs/{job_id}/attempts").json()["items"]
        return items


def test_a_job_on_databricks_succeeds_with_its_output_and_run_page(
    server: ChidoriServer, fake: FakeDatabricks
) -> None:
    job = server.submit(application="dbfs:/apps/pi.py", cluster="dbx", args=["2"])
    assert server.wait(job["id"], timeout=60)["state"] == "SUCCEEDED"
    assert "Pi is roughly 3.14" in server.log(job["id"])
    (attempt,) = _attempts(server, job["id"])
    run = fake.runs[int(attempt["remote_run_id"])]
    assert attempt["remote_url"].endswith(f"/run/{run.run_id}")
    assert run.body["idempotency_token"].startswith(f"chidori-{job['id']}-1-")
    with sign_in(server, server.token) as browser:
        page = browser.get(f"/ui/jobs/{job['id']}").text
    assert f'href="{attempt["remote_url"]}"' in page  # the run page, linked from the UI


def test_a_quota_refusal_waits_and_then_runs(server: ChidoriServer, fake: FakeDatabricks) -> None:
    fake.refuse_quota = True
    try:
        job = server.submit(application="dbfs:/apps/pi.py", cluster="dbx")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(_attempts(server, job["id"])) < 1:
            time.sleep(0.2)
        waiting = server.wait(job["id"], until={"QUEUED"}, timeout=30)
        while time.monotonic() < deadline and not _attempts(server, job["id"])[0]["finished_at"]:
            time.sleep(0.2)
            waiting = _job_json(server, job["id"])
    finally:
        fake.refuse_quota = False
    assert waiting["state"] == "QUEUED" and "quota" in waiting["reason"], waiting
    done = server.wait(job["id"], timeout=60)
    assert done["state"] == "SUCCEEDED" and done["attempts"] == 2
    first, second = _attempts(server, job["id"])
    assert first["state"] == "FAILED" and "quota" in first["reason"]
    assert second["state"] == "SUCCEEDED"
    with server.client() as client:
        events = client.get(f"/api/v1/jobs/{job['id']}/events").json()["items"]
    assert any((e["reason"] or "").startswith("waiting: databricks refused") for e in events)


def test_a_cancel_stops_the_run(server: ChidoriServer, fake: FakeDatabricks) -> None:
    running: list[Step] = [("RUNNING", None)] * 1000
    fake.scripts.append([("PENDING", None), *running])
    job = server.submit(application="dbfs:/apps/pi.py", cluster="dbx")
    server.wait(job["id"], until={"RUNNING"}, timeout=30)
    with server.client() as client:
        client.delete(f"/api/v1/jobs/{job['id']}")
    assert server.wait(job["id"], timeout=30)["state"] == "CANCELLED"
    (attempt,) = _attempts(server, job["id"])
    assert fake.runs[int(attempt["remote_run_id"])].state == ("TERMINATED", "CANCELED")


def test_a_server_killed_mid_run_watches_the_same_run_when_it_starts_again(
    server: ChidoriServer, fake: FakeDatabricks
) -> None:
    fake.scripts.append(
        [("PENDING", None)] + [("RUNNING", None)] * 15 + [("TERMINATED", "SUCCESS")]
    )
    job = server.submit(application="dbfs:/apps/pi.py", cluster="dbx")
    server.wait(job["id"], until={"RUNNING"}, timeout=30)
    submitted = fake.submissions
    server.kill()
    server.start()
    done = server.wait(job["id"], timeout=60)
    assert done["state"] == "SUCCEEDED" and done["attempts"] == 1
    assert fake.submissions == submitted  # watched again, not submitted again
    assert "Pi is roughly 3.14" in server.log(job["id"])
    log = Path(server.log_path).read_text(errors="replace")
    assert TOKEN not in log


def test_delivered_cluster_logs_are_read_from_where_the_last_read_stopped(
    fake: FakeDatabricks,
) -> None:
    with pytest.raises(BackendError, match="new job clusters only"):
        _backend(fake, existing_cluster_id="0101-abc", log_dbfs="dbfs:/cluster-logs")
    backend = _backend(fake, **NEW_CLUSTER, log_dbfs="dbfs:/cluster-logs/")
    fake.scripts.append([("RUNNING", None)] * 5 + [("TERMINATED", "FAILED")])
    run = backend.submit(RemoteSubmission(_job(job_id=40), 1, "chidori-40-1-log"))
    task = fake.runs[int(run.run_id)].body["tasks"][0]
    assert task["new_cluster"]["cluster_log_conf"] == {
        "dbfs": {"destination": "dbfs:/cluster-logs"}
    }
    assert backend.logs(run.run_id, 0, final=False).lines == []  # nothing delivered yet
    stdout = f"dbfs:/cluster-logs/0101-{run.run_id}-job/driver/stdout"
    fake.dbfs[stdout] = bytearray(b"one\ntwo\nthr")
    page = backend.logs(run.run_id, 0, final=False)
    assert (page.lines, page.next_start) == (["one", "two"], 2)  # "thr" is still growing
    fake.dbfs[stdout] += b"ee\nfour"
    fake.dbfs_reads.clear()
    page = backend.logs(run.run_id, 2, final=False)
    assert (page.lines, page.next_start) == (["three"], 3)
    assert fake.dbfs_reads == [8]  # from the byte the last read stopped, not from the start
    fake.runs[int(run.run_id)].error = "ZeroDivisionError"
    page = backend.logs(run.run_id, 3, final=True)  # the end: the last line and the error
    assert page.lines == ["four", "[databricks: ZeroDivisionError]"]
    replica = _backend(fake, **NEW_CLUSTER, log_dbfs="dbfs:/cluster-logs")  # no position
    assert replica.logs(run.run_id, 0, final=True).lines == [
        "one", "two", "three", "four", "[databricks: ZeroDivisionError]",
    ]  # fmt: skip
