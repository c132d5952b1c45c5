"""The `dataproc` cluster type through the official google-cloud-dataproc client (its REST
transport), against a fake at that transport (tests/fakes/dataproc_batches.py, built from
the published v1 definitions). Not verified against the live service.

The batch it submits (PySpark and Spark; conf, resources, the job label), every batch state,
cancel through the batch's operation, what it writes into the log, an idempotent
re-submission after a lost replica, a quota refusal; and a real Chidori server with a
dataproc cluster running a job to its end.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from google.cloud.dataproc_v1 import Batch

from chidori.backends.dataproc import BATCH_STATES, dataproc_state
from chidori.backends.remote import QuotaRefused, RemoteBackend, RemoteState, RemoteSubmission
from chidori.backends.remote_factory import open_remote_backends
from chidori.config import _cluster
from chidori.domain.errors import BackendError, InvalidRequest
from chidori.domain.records import Job
from chidori.domain.spec import JobSpec
from chidori.domain.states import JobState
from tests.fakes.dataproc_batches import FakeDataproc, serve_fake_dataproc
from tests.server import ChidoriServer

OPTIONS = {"project": "p1", "region": "europe-west1", "anonymous": True}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeDataproc]:
    with serve_fake_dataproc() as running:
        yield running


def _backend(fake: FakeDataproc) -> RemoteBackend:
    cluster = _cluster(
        "dp",
        {"type": "dataproc", "url": fake.url, "options": OPTIONS, "conf": {"spark.a": "1"}},
    )
    return open_remote_backends({"dp": cluster}, {})["dp"]


def _job(job_id: int = 3, **spec: Any) -> Job:
    now = datetime.now(UTC)
    fields = {"application": "gs://apps/pi.py", "cluster": "dp", **spec}
    return Job(
        job_id, "j", JobState.ADMITTED, JobSpec.model_validate(fields), "alice", None,
        now, now, None, None, None, 1, None, None, None, False,
    )  # fmt: skip


def test_pyspark_and_spark_batches_carry_the_spec(fake: FakeDataproc) -> None:
    backend = _backend(fake)
    job = _job(args=["4"], py_files=["gs://apps/lib.py"], executor_instances=2)
    run = backend.submit(RemoteSubmission(job, 1, "chidori-3-1-aaa"))
    assert run.run_id == "projects/p1/locations/europe-west1/batches/chidori-3-1-aaa"
    assert run.url is not None and "chidori-3-1-aaa" in run.url and "project=p1" in run.url
    body = fake.batches[run.run_id].body
    assert body["pysparkBatch"] == {
        "mainPythonFileUri": "gs://apps/pi.py",
        "args": ["4"],
        "pythonFileUris": ["gs://apps/lib.py"],
    }
    properties = body["runtimeConfig"]["properties"]
    assert properties["spark.a"] == "1" and properties["spark.executor.instances"] == "2"
    assert body["labels"] == {"chidori-job": "3"}
    jar = _job(job_id=4, application="gs://apps/etl.jar", main_class="com.example.Etl")
    run = backend.submit(RemoteSubmission(jar, 1, "chidori-4-1-bbb"))
    assert fake.batches[run.run_id].body["sparkBatch"] == {
        "mainClass": "com.example.Etl",
        "jarFileUris": ["gs://apps/etl.jar"],
    }
    with pytest.raises(InvalidRequest, match="gs://"):
        backend.check_spec(_job(application="upload://" + "0" * 64 + "/a.py").spec)


def test_every_batch_state_is_mapped(fake: FakeDataproc) -> None:
    assert set(BATCH_STATES) == set(Batch.State.__members__)
    with pytest.raises(BackendError, match="unknown batch state"):
        dataproc_state("STATE_UNSPECIFIED")
    words = ["PENDING", "RUNNING", "CANCELLING", "CANCELLED", "SUCCEEDED", "FAILED"]
    fake.scripts.append(words)
    backend = _backend(fake)
    run = backend.submit(RemoteSubmission(_job(job_id=5), 1, "chidori-5-1-ccc"))
    seen = [backend.status(run.run_id) for _ in words]
    assert [s.service_state for s in seen] == words  # read as numbers (enum-encoding=int)
    assert [s.state for s in seen] == [
        RemoteState.PENDING, RemoteState.RUNNING, RemoteState.RUNNING,
        RemoteState.CANCELLED, RemoteState.SUCCEEDED, RemoteState.FAILED,
    ]  # fmt: skip


def test_cancel_log_and_an_idempotent_resubmission(fake: FakeDataproc) -> None:
    fake.scripts.append(["RUNNING"])
    backend = _backend(fake)
    job = _job(job_id=6)
    first = backend.submit(RemoteSubmission(job, 1, "chidori-6-1-ddd"))
    creates, batches = fake.creates, len(fake.batches)
    again = backend.submit(RemoteSubmission(job, 1, "chidori-6-1-ddd", maybe_submitted=True))
    assert again.run_id == first.run_id and len(fake.batches) == batches
    assert fake.creates == creates + 1  # asked again: the service answered the first batch
    fake.requests.clear()  # even without the request id, the batch id finds it
    assert backend.submit(RemoteSubmission(job, 1, "chidori-6-1-ddd")).run_id == first.run_id
    assert backend.status(first.run_id).state is RemoteState.RUNNING
    backend.cancel(first.run_id)
    states = [backend.status(first.run_id).service_state for _ in range(2)]
    assert states == ["CANCELLING", "CANCELLED"]
    assert backend.logs(first.run_id, 0, final=False).lines == []
    (line,) = backend.logs(first.run_id, 0, final=True).lines
    assert line.startswith("[dataproc: the driver output is under gs://")


def test_a_quota_refusal_is_told_apart(fake: FakeDataproc) -> None:
    fake.refuse_quota = True
    try:
        with pytest.raises(QuotaRefused, match="quota"):
            _backend(fake).submit(RemoteSubmission(_job(job_id=7), 1, "chidori-7-1-eee"))
    finally:
        fake.refuse_quota = False


def test_a_job_on_dataproc_runs_to_its_end_through_a_server(
    fake: FakeDataproc, tmp_path_factory: pytest.TempPathFactory
) -> None:
    home = tmp_path_factory.mktemp("dataproc-server")
    config = home.parent / f"{home.name}.yaml"
    config.write_text(
        f"clusters:\n  dp:\n    type: dataproc\n    url: {fake.url}\n    poll_seconds: 0.3\n"
        "    options:\n      project: p1\n      region: europe-west1\n      anonymous: true\n"
    )
    fake.scripts.append(["PENDING", "RUNNING", "RUNNING", "FAILED"])
    with ChidoriServer(home, config=config) as server:
        job = server.submit(application="gs://apps/pi.py", cluster="dp", args=["2"])
        done = server.wait(job["id"], timeout=60)
        assert done["state"] == "FAILED" and "ended FAILED" in done["reason"], done
        with server.client() as client:
            (attempt,) = client.get(f"/api/v1/jobs/{job['id']}/attempts").json()["items"]
        assert f"/batches/chidori-{job['id']}-1-" in attempt["remote_run_id"]
        assert "console.cloud.google.com/dataproc/batches" in attempt["remote_url"]
        assert "driver output is under gs://" in server.log(job["id"])
