"""The `livy` cluster type end to end, with real components: Chidori B (two replicas on one
PostgreSQL schema) submits through Livy's REST API to Chidori A, which runs the jobs with real
Spark. Pi through B with A's log lines in B's log; a cancel on B kills the batch on A; a quota
refusal by A puts B's job back to waiting; a B replica killed mid-run: its run is adopted by
the other replica and A holds exactly one batch for it."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.server import ChidoriServer

pytestmark = pytest.mark.spark

SLEEPER = "tests/jobs/sleeper.py"


@dataclass
class World:
    a: ChidoriServer
    b: list[ChidoriServer]
    quota_token: str


def _schema(postgres_url: str) -> tuple[str, str]:
    schema = f"chidori_remote_{secrets.token_hex(4)}"
    engine = create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()
    separator = "&" if "?" in postgres_url else "?"
    return schema, f"{postgres_url}{separator}options=-csearch_path%3D{schema}"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, postgres_url: str) -> Iterator[World]:
    root = tmp_path_factory.mktemp("remote-livy")
    a_config = root / "a.yaml"
    # Each caller may submit 4 jobs at once, then one every 10 s: the quota test spends one
    # user's allowance, the others stay well inside theirs.
    a_config.write_text("security:\n  submit_rate_per_second: 0.1\n  submit_burst: 4\n")
    a = ChidoriServer(root / "a", token="token-of-a", config=a_config)
    servers: list[ChidoriServer] = [a]
    schema, url = _schema(postgres_url)
    try:
        a.start()
        with a.client() as client:
            made = client.post("/api/v1/admin/users", json={"name": "quota", "role": "user"})
            assert made.status_code == 201, made.text
            quota_token = client.post("/api/v1/tokens", json={"user": "quota"}).json()["token"]
        b_config = root / "b.yaml"
        b_config.write_text(
            "lease_seconds: 3\n"
            "security:\n  submit_rate_per_second: 0\n"
            "clusters:\n"
            f"  a:\n    type: livy\n    url: {a.url}\n    token_env: A_LIVY_TOKEN\n"
            "    poll_seconds: 0.5\n"
            f"  a-quota:\n    type: livy\n    url: {a.url}\n    username: quota\n"
            "    password_env: A_LIVY_QUOTA_PASSWORD\n    poll_seconds: 0.5\n"
        )
        env = {
            "CHIDORI_DATABASE_URL": url,
            "CHIDORI_SECRET_KEY": "replicas-of-b",
            "A_LIVY_TOKEN": a.token,
            "A_LIVY_QUOTA_PASSWORD": quota_token,
        }
        b = [
            ChidoriServer(root / f"b{i}", token="token-of-b", config=b_config, env=env)
            for i in range(2)
        ]
        for replica in b:
            servers.append(replica)
            replica.start()
        yield World(a, b, quota_token)
    finally:
        for server in servers:
            server.stop()
        engine = create_engine(postgres_url)
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


def _get(server: ChidoriServer, path: str, **params: Any) -> Any:
    with server.client() as client:
        response = client.get(path, params=params)
        assert response.status_code == 200, response.text
        return response.json()


def _attempts(server: ChidoriServer, job_id: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = _get(server, f"/api/v1/jobs/{job_id}/attempts")["items"]
    return items


def _run_id(server: ChidoriServer, job_id: int, timeout: float = 30) -> int:
    """A's batch id of B's job, once B has stored it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        attempts = _attempts(server, job_id)
        if attempts and attempts[-1]["remote_run_id"]:
            return int(attempts[-1]["remote_run_id"])
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} has no remote run after {timeout} s")


def _batches_named(a: ChidoriServer, prefix: str) -> list[dict[str, Any]]:
    answer = httpx.get(
        f"{a.url}/batches", params={"from": 0, "size": 1000}, auth=("x", a.token), timeout=30
    ).json()
    return [b for b in answer["sessions"] if str(b.get("name", "")).startswith(prefix)]


def test_pi_runs_on_a_through_b_with_a_log_lines_in_b_log(world: World) -> None:
    b = world.b[0]
    job = b.submit(application="examples/pi.py", args=["2"], cluster="a", name="pi-remote")
    done = b.wait(job["id"], timeout=180)
    assert done["state"] == "SUCCEEDED", done
    batch_id = _run_id(b, job["id"])
    on_a = world.a.wait(batch_id, timeout=30)
    assert on_a["state"] == "SUCCEEDED"
    assert on_a["name"].startswith(f"chidori-{job['id']}-1-")  # the attempt's key, A's name
    b_log, a_log = b.log(job["id"]), world.a.log(batch_id)
    assert "Pi is roughly 3.1" in b_log
    assert b_log.splitlines() == a_log.splitlines()  # every line of A's, in order, once
    (attempt,) = _attempts(b, job["id"])
    assert attempt["spark_app_id"] and attempt["spark_app_id"] == on_a["spark_app_id"]
    assert done["spark_app_id"] == on_a["spark_app_id"]  # for the History Server link


def test_a_cancel_on_b_kills_the_batch_on_a(world: World) -> None:
    b = world.b[1]
    job = b.submit(application=SLEEPER, args=["120"], cluster="a")
    batch_id = _run_id(b, job["id"])
    world.a.wait(batch_id, until={"RUNNING"}, timeout=60)
    with b.client() as client:
        assert client.delete(f"/api/v1/jobs/{job['id']}").status_code in (200, 202)
    assert b.wait(job["id"], timeout=30)["state"] == "CANCELLED"
    assert world.a.wait(batch_id, timeout=30)["state"] == "CANCELLED"
    (attempt,) = _attempts(b, job["id"])
    assert attempt["state"] == "CANCELLED" and attempt["reason"] == "cancelled on request"


def test_a_quota_refusal_by_a_puts_the_job_back_to_waiting(world: World) -> None:
    auth = ("quota", world.quota_token)
    # Spend the quota user's allowance on A (refused files still count against it).
    statuses = [
        httpx.post(f"{world.a.url}/batches", json={"file": "/etc/passwd"}, auth=auth).status_code
        for _ in range(6)
    ]
    assert statuses[-1] == 429, statuses
    b = world.b[0]
    job = b.submit(application=SLEEPER, args=["1"], cluster="a-quota")
    deadline = time.monotonic() + 30
    current = b.wait(job["id"], until={"QUEUED", "FAILED"})
    while time.monotonic() < deadline and "quota" not in (current.get("reason") or ""):
        time.sleep(0.3)
        current = _get(b, f"/api/v1/jobs/{job['id']}")
    assert current["state"] == "QUEUED", current
    assert current["reason"].startswith("waiting: livy refused for quota (429)"), current
    (attempt,) = _attempts(b, job["id"])
    assert attempt["state"] == "FAILED" and attempt["remote_run_id"] is None
    with b.client() as client:  # waiting (backoff): cancelled at once, never run on A
        client.delete(f"/api/v1/jobs/{job['id']}")
    assert b.wait(job["id"], timeout=30)["state"] == "CANCELLED"


def _replica_of(world: World, server_id: str) -> int:
    for index, replica in enumerate(world.b):
        assert replica.process is not None
        if f"-{replica.process.pid}-" in server_id:
            return index
    raise AssertionError(f"no replica of B is {server_id}")


def test_a_killed_replica_of_b_is_adopted_and_a_runs_one_batch(world: World) -> None:
    job = world.b[0].submit(application=SLEEPER, args=["8"], cluster="a")
    batch_id = _run_id(world.b[0], job["id"])
    world.a.wait(batch_id, until={"RUNNING"}, timeout=60)
    (attempt,) = _attempts(world.b[0], job["id"])
    holder = _replica_of(world, attempt["server_id"])
    other = world.b[1 - holder]
    world.b[holder].kill()
    done = other.wait(job["id"], timeout=120)
    assert done["state"] == "SUCCEEDED", done
    assert done["attempts"] == 1  # the same attempt, watched on: not run again
    events = _get(other, f"/api/v1/jobs/{job['id']}/events")["items"]
    assert any("adopted from" in (e.get("reason") or "") for e in events), events
    assert [b["id"] for b in _batches_named(world.a, f"chidori-{job['id']}-")] == [batch_id]
    b_log = other.log(job["id"])
    assert "sleeper done" in b_log
    assert b_log.splitlines() == world.a.log(batch_id).splitlines()


def test_b_logs_name_no_credential(world: World) -> None:
    for replica in world.b:
        text_of_log = Path(replica.log_path).read_text(errors="replace")
        assert world.a.token not in text_of_log and world.quota_token not in text_of_log
