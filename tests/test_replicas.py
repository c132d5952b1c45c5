"""Several `chidori server` processes on one PostgreSQL and one RabbitMQ: limits hold across
them, every job runs exactly once, and a broker outage loses no accepted job."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.server import ChidoriServer, shared_markers
from tests.test_queue_contract import delete_rabbitmq_queue, rabbitmq_url_or_skip, unique_queue_name

SLEEPER = "tests/jobs/sleeper.py"


@pytest.fixture
def replicas(postgres_schema_url: str, tmp_path: Path) -> Iterator[list[ChidoriServer]]:
    broker = rabbitmq_url_or_skip()
    queue = unique_queue_name()
    env = {
        "CHIDORI_DATABASE_URL": postgres_schema_url,
        "CHIDORI_QUEUE_URL": f"{broker}?queue={queue}",
        "CHIDORI_SECRET_KEY": "shared-secret-for-replicas",
        # Jobs mark each run in a folder they all may write (sandboxed jobs see no other).
        "CHIDORI_SHARED_DIRS": str(shared_markers(tmp_path)),
    }
    config = tmp_path / "chidori.yaml"
    config.write_text("security:\n  submit_rate_per_second: 0\n")
    servers = [ChidoriServer(tmp_path / f"home-{i}", env=env, config=config) for i in range(2)]
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()
        delete_rabbitmq_queue(broker, queue)


def set_running_limit(server: ChidoriServer, limit: int | None) -> None:
    with server.client() as client:
        response = client.put(
            "/api/v1/admin/limits",
            json={"max_running_jobs": limit, "max_memory": None, "max_cores": None, "clusters": {}},
        )
        assert response.status_code == 200, response.text


def test_two_servers_share_the_limit_and_run_every_job_exactly_once(
    replicas: list[ChidoriServer], tmp_path: Path
) -> None:
    markers = shared_markers(tmp_path)
    set_running_limit(replicas[0], 3)
    stop = threading.Event()
    peak = 0

    def sample() -> None:
        nonlocal peak
        with replicas[1].client() as client:
            while not stop.is_set():
                active = client.get(
                    "/api/v1/jobs", params={"state": ["ADMITTED", "RUNNING"], "limit": 1000}
                ).json()["items"]
                peak = max(peak, len(active))
                time.sleep(0.01)

    def submit(index: int) -> int:
        server = replicas[index % 2]
        job = server.submit(
            kind="python", application=SLEEPER, args=["0.05", "--marker", str(markers)]
        )
        return int(job["id"])

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        with ThreadPoolExecutor(16) as pool:
            ids = list(pool.map(submit, range(200)))
        done = [replicas[i % 2].wait(job_id, timeout=300) for i, job_id in enumerate(ids)]
    finally:
        stop.set()
        sampler.join()
    assert len(set(ids)) == 200
    unexpected = [job for job in done if job["state"] != "SUCCEEDED" or job["attempts"] != 1]
    assert not unexpected, [
        (job["id"], job["state"], job["attempts"], job.get("error")) for job in unexpected
    ]
    runs = sorted(p.name.split("-attempt-")[0] for p in markers.iterdir())
    assert runs == sorted(f"job-{job_id}" for job_id in ids)  # each job ran exactly once
    assert 1 <= peak <= 3
    with replicas[0].client() as client:
        hosts = {
            client.get(f"/api/v1/jobs/{job_id}/attempts").json()["items"][0]["server_id"]
            for job_id in ids
        }
    assert len(hosts) == 2  # both replicas admitted and hosted jobs


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=120)


def test_a_broker_outage_while_submitting_loses_no_accepted_job(
    replicas: list[ChidoriServer],
) -> None:
    server = replicas[0]
    accepted: list[int] = []
    with server.client() as client:
        for _ in range(10):
            accepted.append(
                client.post(
                    "/api/v1/jobs", json={"kind": "python", "application": SLEEPER, "args": ["0"]}
                ).json()["id"]
            )
        rabbitmqctl("stop_app")
        try:
            deadline = time.monotonic() + 20
            while httpx.get(f"{server.url}/readyz").status_code == 200:
                assert time.monotonic() < deadline, "readyz never reported the broker outage"
                time.sleep(0.2)
            for _ in range(10):
                response = client.post(
                    "/api/v1/jobs", json={"kind": "python", "application": SLEEPER, "args": ["0"]}
                )
                assert response.status_code == 201  # the store accepts; the outbox holds it
                accepted.append(response.json()["id"])
        finally:
            rabbitmqctl("start_app")
        deadline = time.monotonic() + 60
        while httpx.get(f"{server.url}/readyz").status_code != 200:
            assert time.monotonic() < deadline, "readyz did not recover after the broker came back"
            time.sleep(0.3)
    done = [server.wait(job_id, timeout=120) for job_id in accepted]
    assert [job["state"] for job in done] == ["SUCCEEDED"] * 20
