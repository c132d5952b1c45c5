"""Warm starts with real Spark drivers: a server keeps one warm driver for `local`; jobs that
fit are handed to it, others start cold and say why; one job per driver; losses are handled
like any driver's; warm drivers hold admission capacity and give it up to real jobs."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.server import ChidoriServer

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def warm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChidoriServer]:
    home = tmp_path_factory.mktemp("warm-server")
    with ChidoriServer(home, env={"CHIDORI_WARM_POOL": "1"}) as running:
        yield running


def pool(server: ChidoriServer) -> dict[str, Any]:
    with server.client() as client:
        items = client.get("/api/v1/warm-pool").json()["items"]
    found: dict[str, Any] = next(p for p in items if p["cluster"] == "local")
    return found


def idle_driver(server: ChidoriServer, other_than: str | None = None) -> dict[str, Any]:
    """Wait for an idle warm driver (a new one takes ~8-15 s to start Spark)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for driver in pool(server)["drivers"]:
            if driver["state"] == "idle" and driver["id"] != other_than:
                return dict(driver)
        time.sleep(0.25)
    raise AssertionError(f"no idle warm driver: {pool(server)}")


def test_a_warm_job_gives_the_same_result_and_log_as_a_cold_one(
    warm_server: ChidoriServer, tmp_path: Path
) -> None:
    first = idle_driver(warm_server)
    warm = warm_server.submit(
        application="examples/pi.py", args=["2"], conf={"spark.sql.shuffle.partitions": "3"}
    )
    # A static SQL conf can only be set when the driver starts: this one must start cold.
    cold = warm_server.submit(
        application="examples/pi.py",
        args=["2"],
        conf={"spark.sql.warehouse.dir": str(tmp_path / "warehouse")},
    )
    warm_done = warm_server.wait(warm["id"])
    cold_done = warm_server.wait(cold["id"])
    assert warm_done["state"] == cold_done["state"] == "SUCCEEDED"
    assert warm_done["start_type"] == "warm" and warm_done["start_note"] is None
    assert cold_done["start_type"] == "cold"
    assert "spark.sql.warehouse.dir is fixed when the driver starts" in cold_done["start_note"]
    for job in (warm_done, cold_done):
        log = warm_server.log(job["id"])
        assert "Pi is roughly 3.1" in log
        assert job["spark_app_id"].startswith("local-")
        assert job["spark_app_id"] in log  # the start-up lines are part of the job's log
        event_logs = list((warm_server.home / "spark-events").glob(f"*{job['spark_app_id']}*"))
        assert event_logs, f"no event log for {job['spark_app_id']}"
        assert job["queue_wait_seconds"] is not None and job["run_seconds"] is not None
    assert f"runs on warm driver {first['id']}" in warm_server.log(warm["id"])
    assert warm_done["startup_seconds"] < 2 < cold_done["startup_seconds"]
    # One job per driver: the used one is gone and a fresh one replaces it.
    replacement = idle_driver(warm_server, other_than=first["id"])
    assert first["id"] not in [d["id"] for d in pool(warm_server)["drivers"]]
    assert replacement["pid"] != first["pid"]


def test_a_job_sees_nothing_of_the_job_before_it(warm_server: ChidoriServer) -> None:
    idle_driver(warm_server)
    dirty = warm_server.wait(warm_server.submit(application="tests/jobs/warm_dirty.py")["id"])
    assert dirty["state"] == "SUCCEEDED" and dirty["start_type"] == "warm"
    idle_driver(warm_server)
    probe = warm_server.wait(
        warm_server.submit(
            application="tests/jobs/warm_probe.py",
            conf={"spark.sql.session.timeZone": "UTC"},  # job conf applies on a warm driver
        )["id"]
    )
    log = warm_server.log(probe["id"])
    assert probe["state"] == "SUCCEEDED", log[-3000:]
    assert probe["start_type"] == "warm"
    assert "leaks: none" in log and "probe conf UTC" in log and "sum 45" in log
    assert probe["spark_app_id"] != dirty["spark_app_id"]


def test_killing_an_idle_warm_driver_brings_a_new_one(warm_server: ChidoriServer) -> None:
    victim = idle_driver(warm_server)
    os.killpg(victim["pid"], signal.SIGKILL)
    fresh = idle_driver(warm_server, other_than=victim["id"])
    assert victim["id"] not in [d["id"] for d in pool(warm_server)["drivers"]]
    job = warm_server.wait(warm_server.submit(application="examples/pi.py", args=["1"])["id"])
    assert job["state"] == "SUCCEEDED" and job["start_type"] == "warm"
    assert f"runs on warm driver {fresh['id']}" in warm_server.log(job["id"])


def test_killing_a_busy_warm_driver_is_a_driver_loss(warm_server: ChidoriServer) -> None:
    driver = idle_driver(warm_server)
    job = warm_server.submit(application="tests/jobs/spark_sleep.py", max_retries=1)
    running = warm_server.wait(job["id"], until={"RUNNING"})
    assert running["start_type"] == "warm"
    deadline = time.monotonic() + 30
    while "session ready" not in warm_server.log(job["id"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(driver["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 60
    with warm_server.client() as client:
        while True:
            attempts = client.get(f"/api/v1/jobs/{job['id']}/attempts").json()["items"]
            if len(attempts) == 2 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        # Retried like any driver that died (max_retries 1).
        assert len(attempts) == 2, attempts
        assert attempts[0]["state"] == "FAILED" and "SIGKILL" in attempts[0]["reason"]
        assert attempts[0]["start_type"] == "warm"
        assert client.delete(f"/api/v1/jobs/{job['id']}").status_code == 200
    assert warm_server.wait(job["id"])["state"] == "CANCELLED"


def test_warm_drivers_hold_capacity_and_yield_it_to_jobs(warm_server: ChidoriServer) -> None:
    idle_driver(warm_server)
    with warm_server.client() as client:
        assert client.put("/api/v1/admin/limits", json={"max_running_jobs": 1}).status_code == 200
        try:
            capacity = client.get("/api/v1/capacity").json()
            assert capacity["reserved"]["jobs"] == 1  # the idle warm driver holds the slot
            # A plain Python job can never run warm: the pool must give way to it.
            job = warm_server.submit(
                kind="python", application="tests/jobs/sleeper.py", args=["0.5"]
            )
            highest = 0
            while True:
                state = client.get(f"/api/v1/jobs/{job['id']}").json()["state"]
                reserved = client.get("/api/v1/capacity").json()["reserved"]["jobs"]
                highest = max(highest, reserved)
                if state in ("SUCCEEDED", "FAILED", "CANCELLED"):
                    break
                time.sleep(0.05)
            assert state == "SUCCEEDED" and highest <= 1
        finally:
            client.put("/api/v1/admin/limits", json={"max_running_jobs": 4})
    idle_driver(warm_server)  # the pool refills once nothing waits


def test_an_admin_resizes_the_pool_at_run_time(warm_server: ChidoriServer) -> None:
    idle_driver(warm_server)
    with warm_server.client() as client:
        off = client.put("/api/v1/admin/warm-pool/local", json={"size": 0})
        assert off.status_code == 200 and off.json()["size"] == 0
        deadline = time.monotonic() + 30
        while pool(warm_server)["drivers"] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert pool(warm_server)["drivers"] == []
        back = client.put("/api/v1/admin/warm-pool/local", json={"size": None})
        assert back.json()["size"] == back.json()["configured_size"] == 1
        bad = client.put("/api/v1/admin/warm-pool/nowhere", json={"size": 1})
        assert bad.status_code == 404
        too_many = client.put("/api/v1/admin/warm-pool/local", json={"size": -1})
        assert too_many.status_code == 422
    idle_driver(warm_server)
