"""Admission with real processes on a live server: limits hold (sampled from outside), gang
admission, quotas, fair share, priorities, refusals at submission."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from chidori.domain.units import parse_memory_mib
from chidori.host.processes import tagged_processes
from tests.server import ChidoriServer

SLEEPER = "tests/jobs/sleeper.py"
UNLIMITED: dict[str, Any] = {
    "max_running_jobs": None,
    "max_memory": None,
    "max_cores": None,
    "clusters": {},
}


@pytest.fixture(scope="module")
def admitting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChidoriServer]:
    with ChidoriServer(tmp_path_factory.mktemp("admission")) as server:
        yield server


def set_limits(server: ChidoriServer, **limits: Any) -> None:
    with server.client() as client:
        response = client.put("/api/v1/admin/limits", json=UNLIMITED | limits)
        assert response.status_code == 200, response.text


def sleeper(server: ChidoriServer, seconds: float, **spec: Any) -> int:
    job = server.submit(kind="python", application=SLEEPER, args=[str(seconds)], **spec)
    return int(job["id"])


class Sampler:
    """Polls from outside, every 20 ms: the jobs the API reports as holding resources, and
    the live processes tagged with those job ids."""

    def __init__(self, server: ChidoriServer, job_ids: list[int]) -> None:
        self.server = server
        self.job_ids = job_ids
        self.max_active = 0
        self.max_memory_mb = 0
        self.max_cores = 0
        self.max_processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self.server.client() as client:
            while not self._stop.is_set():
                items = client.get(
                    "/api/v1/jobs", params={"state": ["ADMITTED", "RUNNING"], "limit": 1000}
                ).json()["items"]
                active = [i for i in items if i["id"] in self.job_ids]
                self.max_active = max(self.max_active, len(active))
                memory = sum(parse_memory_mib(i["demand"]["memory"]) for i in active)
                self.max_memory_mb = max(self.max_memory_mb, memory)
                self.max_cores = max(self.max_cores, sum(i["demand"]["cores"] for i in active))
                running = sum(1 for job_id in self.job_ids if tagged_processes(job_id))
                self.max_processes = max(self.max_processes, running)
                time.sleep(0.02)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


def wait_all(server: ChidoriServer, job_ids: list[int]) -> list[dict[str, Any]]:
    return [server.wait(job_id, timeout=300) for job_id in job_ids]


def test_a_running_jobs_limit_of_two_is_never_exceeded(admitting: ChidoriServer) -> None:
    set_limits(admitting, max_running_jobs=2)
    jobs = [sleeper(admitting, 0.3) for _ in range(20)]
    with Sampler(admitting, jobs) as sampled:
        done = wait_all(admitting, jobs)
    assert all(job["state"] == "SUCCEEDED" for job in done), [
        (j["id"], j["state"], j["reason"]) for j in done if j["state"] != "SUCCEEDED"
    ]
    assert sampled.max_active == 2
    assert 1 <= sampled.max_processes <= 2


def test_memory_and_cores_limits_hold_and_gangs_start_whole(admitting: ChidoriServer) -> None:
    set_limits(admitting, max_memory="4g", max_cores=5)
    small = [sleeper(admitting, 1.5, driver_memory="1g") for _ in range(6)]
    # 1g driver + 2 x 1g executors = 3g and 1 + 2 x 2 = 5 cores: needs the whole cluster.
    gang = sleeper(
        admitting,
        0.5,
        driver_memory="1g",
        executor_instances=2,
        executor_memory="1g",
        executor_cores=2,
    )
    jobs = [*small, gang]
    with Sampler(admitting, jobs) as sampled:
        with admitting.client() as client:
            deadline = time.monotonic() + 5
            waiting = client.get(f"/api/v1/jobs/{gang}").json()
            while not waiting["waiting_reason"] and time.monotonic() < deadline:
                time.sleep(0.05)
                waiting = client.get(f"/api/v1/jobs/{gang}").json()
        done = wait_all(admitting, jobs)
    assert all(job["state"] == "SUCCEEDED" for job in done), [
        (j["id"], j["state"], j["reason"]) for j in done if j["state"] != "SUCCEEDED"
    ]
    assert sampled.max_memory_mb <= 4096 and sampled.max_cores <= 5
    # The four small jobs hold all 4g: the gang waits whole, for memory.
    assert waiting["state"] == "QUEUED"
    assert "global memory limit 4g: needs 3g" in waiting["waiting_reason"]
    assert done[-1]["demand"] == {"memory": "3g", "cores": 5}


def test_a_job_bigger_than_a_whole_limit_is_refused_at_submission(admitting: ChidoriServer) -> None:
    set_limits(admitting, max_memory="4g")
    with admitting.client() as client:
        response = client.post(
            "/api/v1/jobs",
            json={
                "kind": "python",
                "application": SLEEPER,
                "args": ["0"],
                "driver_memory": "2g",
                "executor_instances": 3,
                "executor_memory": "1g",
            },
        )
    assert response.status_code == 422
    assert response.json()["error"]["fields"][0]["field"] == "demand"
    assert "memory limit 4g" in response.json()["error"]["message"]


def test_a_queue_quota_holds_while_other_queues_run(admitting: ChidoriServer) -> None:
    set_limits(admitting, max_running_jobs=4)
    with admitting.client() as client:
        assert (
            client.put("/api/v1/admin/queues/narrow", json={"max_running_jobs": 1}).status_code
            == 200
        )
    narrow = [sleeper(admitting, 0.4, queue="narrow") for _ in range(5)]
    wide = [sleeper(admitting, 0.4) for _ in range(5)]
    with Sampler(admitting, narrow) as sampled_narrow, Sampler(admitting, wide) as sampled_wide:
        done = wait_all(admitting, narrow + wide)
    assert all(job["state"] == "SUCCEEDED" for job in done), [
        (j["id"], j["state"], j["reason"]) for j in done if j["state"] != "SUCCEEDED"
    ]
    assert sampled_narrow.max_active == 1
    assert sampled_wide.max_active >= 2


def test_an_unknown_queue_is_refused(admitting: ChidoriServer) -> None:
    with admitting.client() as client:
        response = client.post(
            "/api/v1/jobs", json={"kind": "python", "application": SLEEPER, "queue": "nope"}
        )
    assert response.status_code == 422 and "unknown queue" in response.text


def admission_order(server: ChidoriServer, job_ids: list[int]) -> list[dict[str, Any]]:
    with server.client() as client:
        jobs = [client.get(f"/api/v1/jobs/{job_id}").json() for job_id in job_ids]
    return sorted(jobs, key=lambda j: (j["admitted_at"], j["id"]))


def test_weighted_fair_share_splits_admissions_three_to_one(admitting: ChidoriServer) -> None:
    set_limits(admitting, max_running_jobs=0)  # hold everything while both queues fill up
    with admitting.client() as client:
        client.put("/api/v1/admin/queues/heavy", json={"weight": 3})
        client.put("/api/v1/admin/queues/light", json={"weight": 1})
    heavy = [sleeper(admitting, 0.2, queue="heavy") for _ in range(30)]
    light = [sleeper(admitting, 0.2, queue="light") for _ in range(30)]
    set_limits(admitting, max_running_jobs=4)
    wait_all(admitting, heavy + light)
    first = admission_order(admitting, heavy + light)[:32]
    from_heavy = sum(1 for job in first if job["queue"] == "heavy")
    # 3:1 of 32 is 24:8; allow two either way for ties between slots freed together.
    assert 22 <= from_heavy <= 26, from_heavy


def test_a_high_priority_job_overtakes_waiting_low_priority_ones(admitting: ChidoriServer) -> None:
    set_limits(admitting, max_running_jobs=0)
    low = [sleeper(admitting, 0.2, priority=0) for _ in range(5)]
    high = sleeper(admitting, 0.2, priority=10)
    with admitting.client() as client:
        assert (
            "running-jobs limit 0" in client.get(f"/api/v1/jobs/{low[0]}").json()["waiting_reason"]
        )
    set_limits(admitting, max_running_jobs=1)
    wait_all(admitting, [*low, high])
    order = [job["id"] for job in admission_order(admitting, [*low, high])]
    assert order[0] == high and order[1:] == low
