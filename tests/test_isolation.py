"""Hostile jobs: a plain user's job, in every kind that runs user code (python; spark, in the
driver and a Python worker; a Livy session statement; a warm driver), tries to read the
server's memory, environment and files, signal it, its watchdog and another job, read another
job's files and logs, and become root. Every try must fail, and no secret may appear in any
job's log. Needs root (the sandbox); CI runs as root."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from chidori.host.processes import PROC
from tests.server import REPO, ChidoriServer, processes_of_uid

pytestmark = [
    pytest.mark.spark,
    pytest.mark.skipif(os.geteuid() != 0, reason="sandboxes need root (CI runs as root)"),
]
HOSTILE = REPO / "tests" / "jobs" / "hostile.py"
SLEEPER = REPO / "tests" / "jobs" / "sleeper.py"
USER_TOKEN_NAME = "mallory"


@dataclass
class World:
    server: ChidoriServer
    token: str  # mallory's: a plain user
    victim_job: int  # another user's job, running
    targets: dict[str, object]
    secrets: list[str]


def _watchdog_pid(server_pid: int) -> int:
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if ppid == server_pid and b"watchdog.py" in cmdline:
            return int(entry.name)
    raise AssertionError("no watchdog found")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    home = tmp_path_factory.mktemp("isolation")
    with ChidoriServer(home, env={"CHIDORI_WARM_POOL": "1"}) as server, server.client() as admin:
        tokens = {}
        for name, team in ((USER_TOKEN_NAME, "m"), ("victim", "v")):
            assert admin.post(
                "/api/v1/admin/users", json={"name": name, "role": "user", "team": team}
            ).is_success
            tokens[name] = admin.post("/api/v1/tokens", json={"user": name}).json()["token"]
        with server.client(tokens["victim"]) as victim:
            job = victim.post(
                "/api/v1/jobs",
                json={"kind": "python", "application": str(SLEEPER), "args": ["600"]},
            ).json()
        server.wait(job["id"], {"RUNNING"})
        attempts = admin.get(f"/api/v1/jobs/{job['id']}/attempts").json()["items"]
        assert server.process is not None
        targets = {
            "server_pid": server.process.pid,
            "watchdog_pid": _watchdog_pid(server.process.pid),
            "home": str(home),
            "victim_dir": str(home / "work" / str(job["id"]) / "attempt-1"),
            "victim_pid": attempts[0]["pid"],
            "event_log_dir": str(home / "spark-events"),
        }
        secrets = [server.token, tokens["victim"], (home / "secret.key").read_text().strip()]
        try:
            yield World(server, tokens[USER_TOKEN_NAME], job["id"], targets, secrets)
        finally:
            admin.delete(f"/api/v1/jobs/{job['id']}")


def _submit(world: World, **spec: Any) -> dict[str, Any]:
    with world.server.client(world.token) as client:
        response = client.post("/api/v1/jobs", json=spec)
    assert response.status_code == 201, response.text
    job: dict[str, Any] = response.json()
    return job


def _check_probes(world: World, log: str, expected_prefixes: tuple[str, ...] = ("",)) -> None:
    lines = [line for line in log.splitlines() if line.startswith("PROBE ")]
    for prefix in expected_prefixes:
        ran = [line for line in lines if line.split()[1].startswith(prefix)]
        assert len(ran) >= 20, f"probes with prefix {prefix!r} did not run:\n{log[-3000:]}"
    leaked = [line for line in lines if " LEAKED " in line]
    assert leaked == [], "\n".join(leaked)
    for secret in world.secrets:
        assert secret not in log, "a secret reached the job's log"


def _victim_still_runs(world: World) -> None:
    with world.server.client() as admin:
        assert admin.get(f"/api/v1/jobs/{world.victim_job}").json()["state"] == "RUNNING"


def test_a_python_job_cannot_reach_the_server_or_another_job(world: World) -> None:
    job = _submit(world, kind="python", application=str(HOSTILE), args=[json.dumps(world.targets)])
    done = world.server.wait(job["id"])
    log = world.server.log(job["id"])
    assert done["state"] == "SUCCEEDED", log[-3000:]
    _check_probes(world, log)
    _victim_still_runs(world)
    uid = int(log.split("runs as uid ")[1].split()[0])
    assert 40000 <= uid <= 49999


def test_a_spark_job_and_its_python_worker_cannot_reach_the_server(world: World) -> None:
    """Cold (a driver memory the warm pool does not have): spark-submit, the JVM, the Python
    driver and a Python worker, all in the sandbox."""
    job = _submit(
        world,
        application=str(HOSTILE),
        args=[json.dumps(world.targets), "--spark"],
        driver_memory="768m",
    )
    done = world.server.wait(job["id"])
    log = world.server.log(job["id"])
    assert done["state"] == "SUCCEEDED", log[-3000:]
    _check_probes(world, log, ("", "worker:"))
    _victim_still_runs(world)
    # Its event log reached the History Server's folder, owned by the job's identity.
    events = Path(str(world.targets["event_log_dir"]))
    assert any(entry.stat().st_uid >= 40000 for entry in events.iterdir())


def test_a_job_on_a_warm_driver_cannot_reach_the_server(world: World) -> None:
    deadline = time.monotonic() + 120
    with world.server.client() as admin:
        while time.monotonic() < deadline:
            pools = admin.get("/api/v1/warm-pool").json()["items"]
            if any(d["state"] == "idle" for p in pools for d in p["drivers"]):
                break
            time.sleep(0.5)
    job = _submit(world, application=str(HOSTILE), args=[json.dumps(world.targets), "--spark"])
    done = world.server.wait(job["id"])
    log = world.server.log(job["id"])
    assert done["state"] == "SUCCEEDED", log[-3000:]
    with world.server.client() as admin:
        attempts = admin.get(f"/api/v1/jobs/{job['id']}/attempts").json()["items"]
    assert attempts[-1]["start_type"] == "warm", attempts
    _check_probes(world, log, ("", "worker:"))
    _victim_still_runs(world)


def test_a_livy_session_statement_cannot_reach_the_server(world: World) -> None:
    url, auth = world.server.url, ("mallory", world.token)
    session = httpx.post(f"{url}/sessions", json={"kind": "pyspark"}, auth=auth, timeout=30)
    assert session.status_code == 201, session.text
    session_id = session.json()["id"]
    code = HOSTILE.read_text().replace('if __name__ == "__main__":', "if False:")
    code += (
        f"\nprint('\\n'.join(run_probes(json.loads({json.dumps(json.dumps(world.targets))}))))\n"
    )
    statement = httpx.post(
        f"{url}/sessions/{session_id}/statements", json={"code": code}, auth=auth, timeout=30
    ).json()
    deadline = time.monotonic() + 180
    while statement["state"] not in ("available", "error", "cancelled"):
        assert time.monotonic() < deadline, statement
        time.sleep(0.5)
        statement = httpx.get(
            f"{url}/sessions/{session_id}/statements/{statement['id']}", auth=auth, timeout=30
        ).json()
    httpx.delete(f"{url}/sessions/{session_id}", auth=auth, timeout=30)
    output = statement["output"]
    assert output["status"] == "ok", output
    text = output["data"]["text/plain"]
    _check_probes(world, text)
    _victim_still_runs(world)


def test_processes_a_job_leaves_behind_die_with_it_even_after_setsid(world: World) -> None:
    """A job that starts a detached grandchild (new session, cleared environment, so no tag
    finds it) and exits: nothing of its identity survives the attempt."""
    job = _submit(world, kind="python", application=str(HOSTILE.parent / "escaper.py"))
    done = world.server.wait(job["id"])
    log = world.server.log(job["id"])
    assert done["state"] == "SUCCEEDED", log
    uid = int(log.split("uid ")[1].split()[0])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and processes_of_uid(uid):
        time.sleep(0.1)
    assert processes_of_uid(uid) == []
