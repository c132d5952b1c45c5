"""One contract for every remote backend whose service is faked at its transport
(Databricks, Dataproc: not verified against the live services), as the queue contract does for
queues: a run submitted ends SUCCEEDED, the same key answers the same run, a cancel ends it
CANCELLED, an unknown run is NotFound, a quota refusal is QuotaRefused. The `livy` backend is
not in it: it is tested end to end against a real Chidori instead (tests/test_remote_livy.py:
success with the log, cancel, quota, one batch after an adoption)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from chidori.backends.remote import (
    QuotaRefused,
    RemoteBackend,
    RemoteState,
    RemoteSubmission,
)
from chidori.backends.remote_factory import open_remote_backends
from chidori.config import _cluster
from chidori.domain.errors import NotFound
from chidori.domain.records import Job
from chidori.domain.spec import JobSpec
from chidori.domain.states import JobState
from tests.fakes.databricks_jobs import serve_fake_databricks
from tests.fakes.dataproc_batches import serve_fake_dataproc


@dataclass
class Service:
    backend: RemoteBackend
    application: str
    unknown_run: str
    runs: Callable[[], int]  # how many runs the service holds
    keep_running: Callable[[], None]  # the next run stays RUNNING until cancelled
    refuse_quota: Callable[[bool], None]


@pytest.fixture(params=["databricks", "dataproc", "dataproc-jobs"])
def service(request: pytest.FixtureRequest) -> Iterator[Service]:
    if request.param == "databricks":
        with serve_fake_databricks("tok") as dbx:
            raw = {
                "type": "databricks", "url": dbx.url, "token_env": "T",
                "options": {"spark_version": "15.4.x", "node_type_id": "n1", "retry_seconds": 1},
            }  # fmt: skip
            backend = open_remote_backends({"c": _cluster("c", raw)}, {"T": "tok"})["c"]
            running: list[tuple[str, str | None]] = [("PENDING", None), *[("RUNNING", None)] * 99]
            yield Service(
                backend, "dbfs:/a/pi.py", "999999",
                lambda: len(dbx.runs),
                lambda: dbx.scripts.append(running),
                lambda on: setattr(dbx, "refuse_quota", on),
            )  # fmt: skip
        return
    with serve_fake_dataproc() as dp:
        dp.output_on_create = b"Pi is roughly 3.14\n"
        on_cluster = request.param == "dataproc-jobs"  # jobs on an existing cluster
        options = {"project": "p", "region": "r", "anonymous": True, "storage_url": dp.url}
        raw = {
            "type": "dataproc", "url": dp.url,
            "options": {**options, **({"cluster_name": "etl"} if on_cluster else {})},
        }  # fmt: skip
        backend = open_remote_backends({"c": _cluster("c", raw)}, {})["c"]
        scripts = dp.job_scripts if on_cluster else dp.scripts
        unknown = f"projects/p/{'regions/r/jobs' if on_cluster else 'locations/r/batches'}/nope"
        yield Service(
            backend, "gs://a/pi.py", unknown,
            lambda: len(dp.jobs if on_cluster else dp.batches),
            lambda: scripts.append(["PENDING"] + ["RUNNING"] * 99),
            lambda on: setattr(dp, "refuse_quota", on),
        )  # fmt: skip


def _submission(service: Service, job_id: int, key: str, again: bool = False) -> RemoteSubmission:
    now = datetime.now(UTC)
    spec = JobSpec(application=service.application, cluster="c")
    job = Job(
        job_id, "j", JobState.ADMITTED, spec, "o", None, now, now,
        None, None, None, 1, None, None, None, False,
    )  # fmt: skip
    return RemoteSubmission(job, 1, key, maybe_submitted=again)


def _until_terminal(backend: RemoteBackend, run_id: str) -> RemoteState:
    for _ in range(200):
        state = backend.status(run_id).state
        if state.terminal:
            return state
    raise AssertionError(f"run {run_id} never ended")


def test_a_run_ends_succeeded_with_its_log(service: Service) -> None:
    run = service.backend.submit(_submission(service, 1, "chidori-1-1-aaa"))
    assert _until_terminal(service.backend, run.run_id) is RemoteState.SUCCEEDED
    assert service.backend.logs(run.run_id, 0, final=True).lines  # something was copied


def test_the_same_key_answers_the_same_run(service: Service) -> None:
    first = service.backend.submit(_submission(service, 2, "chidori-2-1-bbb"))
    again = service.backend.submit(_submission(service, 2, "chidori-2-1-bbb", again=True))
    assert again.run_id == first.run_id and service.runs() == 1


def test_a_cancel_ends_the_run_cancelled(service: Service) -> None:
    service.keep_running()
    run = service.backend.submit(_submission(service, 3, "chidori-3-1-ccc"))
    assert service.backend.status(run.run_id).state is not RemoteState.SUCCEEDED
    service.backend.cancel(run.run_id)
    assert _until_terminal(service.backend, run.run_id) is RemoteState.CANCELLED


def test_an_unknown_run_is_not_found(service: Service) -> None:
    with pytest.raises(NotFound):
        service.backend.status(service.unknown_run)
    service.backend.cancel(service.unknown_run)  # nothing to stop: done


def test_a_quota_refusal_is_quota_refused(service: Service) -> None:
    service.refuse_quota(True)
    with pytest.raises(QuotaRefused):
        service.backend.submit(_submission(service, 4, "chidori-4-1-ddd"))
    service.refuse_quota(False)
    assert service.backend.submit(_submission(service, 4, "chidori-4-1-ddd")).run_id
