"""The `dataproc` cluster type through the official google-cloud-dataproc client (its REST
transport), against a fake at that transport (tests/fakes/dataproc_batches.py, built from
the published v1 definitions). Not verified against the live service.

The batch it submits (PySpark and Spark; conf, resources, the job label), every batch state,
cancel through the batch's operation, what it writes into the log, an idempotent
re-submission after a lost replica, a quota refusal; jobs on an existing cluster (their
placement, every job state, cancel, the same request id answering the same job); the driver
output read from Cloud Storage (google-cloud-storage against tests/fakes/gcs_objects.py) from
where the last read stopped; and a real Chidori server with a dataproc cluster running a job
to its end, its driver output in the job's log.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from google.cloud.dataproc_v1 import Batch, JobStatus

from chidori.backends.dataproc import BATCH_STATES, JOB_STATES, dataproc_state
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


def _backend(fake: FakeDataproc, **options: Any) -> RemoteBackend:
    options = {**OPTIONS, "storage_url": fake.url, **options}
    cluster = _cluster(
        "dp",
        {"type": "dataproc", "url": fake.url, "options": options, "conf": {"spark.a": "1"}},
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
    assert backend.logs(first.run_id, 0, final=True).lines == []  # no output written


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
        f"      storage_url: {fake.url}\n"
    )
    fake.scripts.append(["PENDING", "RUNNING", "RUNNING", "FAILED"])
    fake.output_on_create = b"Pi is roughly 3.14\nTraceback: boom\n"
    with ChidoriServer(home, config=config) as server:
        job = server.submit(application="gs://apps/pi.py", cluster="dp", args=["2"])
        done = server.wait(job["id"], timeout=60)
        assert done["state"] == "FAILED" and "ended FAILED" in done["reason"], done
        with server.client() as client:
            (attempt,) = client.get(f"/api/v1/jobs/{job['id']}/attempts").json()["items"]
        assert f"/batches/chidori-{job['id']}-1-" in attempt["remote_run_id"]
        assert "console.cloud.google.com/dataproc/batches" in attempt["remote_url"]
        fake.output_on_create = b""
        assert server.log(job["id"]).splitlines()[:2] == ["Pi is roughly 3.14", "Traceback: boom"]


# ---- jobs on an existing cluster --------------------------------------------------------------


def test_cluster_jobs_carry_the_spec_and_their_placement(fake: FakeDataproc) -> None:
    backend = _backend(fake, cluster_name="etl", cluster_names=["adhoc"])
    job = _job(job_id=20, args=["4"], py_files=["gs://apps/lib.py"], executor_instances=2)
    run = backend.submit(RemoteSubmission(job, 1, "chidori-20-1-aaa"))
    assert run.run_id == "projects/p1/regions/europe-west1/jobs/chidori-20-1-aaa"
    assert run.url == (
        "https://console.cloud.google.com/dataproc/jobs/chidori-20-1-aaa"
        "?region=europe-west1&project=p1"
    )
    body = fake.jobs["chidori-20-1-aaa"].body
    assert body["reference"] == {"projectId": "p1", "jobId": "chidori-20-1-aaa"}
    assert body["placement"] == {"clusterName": "etl"}
    assert body["labels"] == {"chidori-job": "20"}
    pyspark = body["pysparkJob"]
    assert pyspark["mainPythonFileUri"] == "gs://apps/pi.py" and pyspark["args"] == ["4"]
    assert pyspark["pythonFileUris"] == ["gs://apps/lib.py"]
    assert pyspark["properties"]["spark.a"] == "1"
    assert pyspark["properties"]["spark.executor.instances"] == "2"
    assert fake.job_requests["chidori-20-1-aaa"] == "chidori-20-1-aaa"  # request id: the key
    conf = {"chidori.dataproc.cluster_name": "adhoc"}
    jar = _job(job_id=21, application="gs://apps/etl.jar", main_class="com.Etl", conf=conf)
    backend.check_spec(jar.spec)
    backend.submit(RemoteSubmission(jar, 1, "chidori-21-1-bbb"))
    body = fake.jobs["chidori-21-1-bbb"].body
    assert body["placement"] == {"clusterName": "adhoc"}
    assert body["sparkJob"]["mainClass"] == "com.Etl"
    assert body["sparkJob"]["jarFileUris"] == ["gs://apps/etl.jar"]
    assert "chidori.dataproc.cluster_name" not in body["sparkJob"]["properties"]
    elsewhere = _job(conf={"chidori.dataproc.cluster_name": "prod-billing"})
    with pytest.raises(InvalidRequest, match="adhoc, etl") as refused:
        backend.check_spec(elsewhere.spec)
    assert [f.field for f in refused.value.fields] == ["conf.chidori.dataproc.cluster_name"]
    with pytest.raises(InvalidRequest, match="allowed: none"):  # batches only: no cluster
        _backend(fake).check_spec(elsewhere.spec)


def test_every_job_state_is_mapped(fake: FakeDataproc) -> None:
    assert set(JOB_STATES) == set(JobStatus.State.__members__)
    with pytest.raises(BackendError, match="unknown job state"):
        dataproc_state("STATE_UNSPECIFIED", JOB_STATES)
    words = [w for w in JobStatus.State.__members__ if w != "STATE_UNSPECIFIED"]
    fake.job_scripts.append(words)
    backend = _backend(fake, cluster_name="etl")
    run = backend.submit(RemoteSubmission(_job(job_id=22), 1, "chidori-22-1-ccc"))
    seen = [backend.status(run.run_id) for _ in words]
    assert [s.service_state for s in seen] == words  # read as numbers (enum-encoding=int)
    assert {w: s.state for w, s in zip(words, seen, strict=True)} == {
        "PENDING": RemoteState.PENDING, "SETUP_DONE": RemoteState.PENDING,
        "RUNNING": RemoteState.RUNNING, "CANCEL_PENDING": RemoteState.RUNNING,
        "CANCEL_STARTED": RemoteState.RUNNING, "CANCELLED": RemoteState.CANCELLED,
        "DONE": RemoteState.SUCCEEDED, "ERROR": RemoteState.FAILED,
        "ATTEMPT_FAILURE": RemoteState.RUNNING,
    }  # fmt: skip


def test_a_cluster_job_is_cancelled_and_resubmitted_idempotently(fake: FakeDataproc) -> None:
    fake.job_scripts.append(["RUNNING"])
    backend = _backend(fake, cluster_name="etl")
    job = _job(job_id=23)
    first = backend.submit(RemoteSubmission(job, 1, "chidori-23-1-ddd"))
    jobs, submits = len(fake.jobs), fake.job_submits
    replica = _backend(fake, cluster_name="etl")  # another replica, after this one was lost
    again = replica.submit(RemoteSubmission(job, 1, "chidori-23-1-ddd", maybe_submitted=True))
    assert again == first and len(fake.jobs) == jobs and fake.job_submits == submits + 1
    fake.job_requests.clear()  # even without the request id, the job id finds it
    assert replica.submit(RemoteSubmission(job, 1, "chidori-23-1-ddd")).run_id == first.run_id
    assert replica.status(first.run_id).state is RemoteState.RUNNING
    replica.cancel(first.run_id)
    states = [replica.status(first.run_id).service_state for _ in range(2)]
    assert states == ["CANCEL_PENDING", "CANCELLED"]
    replica.cancel(first.run_id)  # over already: FAILED_PRECONDITION is not an error
    fake.jobs["chidori-23-1-ddd"].details = "Job cancelled by the user"
    assert replica.logs(first.run_id, 0, final=True).lines == [
        "[dataproc: Job cancelled by the user]"
    ]


def test_driver_output_is_read_from_where_the_last_read_stopped(fake: FakeDataproc) -> None:
    backend = _backend(fake, cluster_name="etl")
    run = backend.submit(RemoteSubmission(_job(job_id=24), 1, "chidori-24-1-eee"))
    output = fake.jobs["chidori-24-1-eee"].output_uri
    assert backend.logs(run.run_id, 0, final=False).lines == []  # nothing written yet
    fake.gcs.append(f"{output}.000000000", b"one\ntwo\nthr")
    fake.gcs.append("gs://dataproc-staging/" + output.split("/", 3)[3] + "-other.000000000", b"x\n")
    fake.gcs.ranges.clear()
    page = backend.logs(run.run_id, 0, final=False)
    assert (page.lines, page.next_start) == (["one", "two"], 2)  # "thr" is still growing
    fake.gcs.append(f"{output}.000000000", b"ee\n")
    page = backend.logs(run.run_id, 2, final=False)
    assert (page.lines, page.next_start) == (["three"], 3)
    assert fake.gcs.ranges[-1].startswith("bytes=8-")  # from the byte the last read stopped
    fake.gcs.append(f"{output}.000000001", b"four\nfive")  # the next part: the first is whole
    fake.gcs.ranges.clear()
    page = backend.logs(run.run_id, 3, final=True)
    assert (page.lines, page.next_start) == (["four", "five"], 5)  # the end: its last line too
    assert fake.gcs.ranges == ["bytes=0-8"]  # the first part, read to its end, is not read again
    replica = _backend(fake, cluster_name="etl")  # no position: from the first object
    assert replica.logs(run.run_id, 0, final=True).lines == ["one", "two", "three", "four", "five"]
    assert replica.logs(run.run_id, 3, final=True).lines == ["four", "five"]
    batches = _backend(fake)  # no cluster: a batch, its output under runtimeInfo.outputUri
    batch = batches.submit(RemoteSubmission(_job(job_id=25), 1, "chidori-25-1-fff"))
    assert "/batches/" in batch.run_id
    where = f"gs://dataproc-staging/{batch.run_id}/driveroutput.000000000"
    fake.gcs.append(where, b"from a batch\n")
    assert batches.logs(batch.run_id, 0, final=False).lines == ["from a batch"]
