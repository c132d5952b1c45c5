"""Fault injection with real processes: three replicas on one PostgreSQL run 30 jobs (Spark
and Python); one replica is killed (-9) or frozen (SIGSTOP) in the middle. Every job ends,
jobs of the failed replica run exactly once more, no two attempts of a job ever overlap, and
the admission limit holds throughout."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server import ChidoriServer, shared_markers

LIMIT = 6
LEASE = 6.0


@pytest.fixture
def cluster_of_three(postgres_schema_url: str, tmp_path: Path) -> Iterator[list[ChidoriServer]]:
    env = {
        "CHIDORI_DATABASE_URL": postgres_schema_url,
        "CHIDORI_SECRET_KEY": "shared-secret",
        "CHIDORI_LEASE_SECONDS": str(LEASE),
        # Jobs mark each run in a folder they all may write (sandboxed jobs see no other).
        "CHIDORI_SHARED_DIRS": str(shared_markers(tmp_path)),
    }
    servers = [ChidoriServer(tmp_path / f"home-{i}", env=env) for i in range(3)]
    try:
        for server in servers:
            server.start()
        with servers[0].client() as client:
            client.put(
                "/api/v1/admin/limits",
                json={
                    "max_running_jobs": LIMIT,
                    "max_memory": None,
                    "max_cores": None,
                    "clusters": {},
                },
            )
        yield servers
    finally:
        for server in servers:
            if server.process is not None:
                server.process.send_signal(signal.SIGCONT)
            server.stop()


class LimitSampler(threading.Thread):
    """Samples the jobs holding a slot, through whichever replica answers."""

    def __init__(self, servers: list[ChidoriServer]) -> None:
        super().__init__(daemon=True)
        self.servers = servers
        self.peak = 0
        self.stop_event = threading.Event()

    def run(self) -> None:
        turn = 0
        while not self.stop_event.is_set():
            server = self.servers[turn % len(self.servers)]
            turn += 1
            try:
                items = httpx.get(
                    f"{server.url}/api/v1/jobs",
                    params={"state": ["ADMITTED", "RUNNING"], "limit": 1000},
                    headers={"Authorization": f"Bearer {server.token}"},
                    timeout=2,
                ).json()["items"]
            except (httpx.HTTPError, ValueError, KeyError):
                continue  # a killed or frozen replica
            self.peak = max(self.peak, len(items))
            time.sleep(0.02)


def submit_mix(servers: list[ChidoriServer], markers: Path) -> list[int]:
    """30 jobs, sent round-robin to the replicas as a load balancer would."""
    ids = []
    for i in range(30):
        server = servers[i % len(servers)]
        if i in (0, 15):
            job = server.submit(application="examples/pi.py", name=f"pi-{i}")
        else:
            job = server.submit(
                kind="python",
                application="tests/jobs/ticker.py",
                args=["3", str(markers)],
                name=f"ticker-{i}",
            )
        ids.append(int(job["id"]))
    return ids


def attempts_of(server: ChidoriServer, job_id: int) -> list[dict[str, Any]]:
    with server.client() as client:
        items: list[dict[str, Any]] = client.get(f"/api/v1/jobs/{job_id}/attempts").json()["items"]
        return items


def active_on(server: ChidoriServer, victim_id: str, ids: list[int]) -> list[int]:
    """Jobs with an attempt the victim holds: running, or admitted and still starting (a
    start not yet recorded when the victim stopped is lost with it all the same)."""
    return [
        job_id
        for job_id in ids
        if any(
            a["server_id"] == victim_id and a["state"] in ("STARTING", "RUNNING")
            for a in attempts_of(server, job_id)
        )
    ]


def pick_victim(
    servers: list[ChidoriServer], ids: list[int]
) -> tuple[ChidoriServer, str, list[ChidoriServer]]:
    """Once jobs run, the replica hosting the most of them: (it, its server id, the others)."""
    observer = servers[0]
    with observer.client() as client:
        by_id = {
            s["id"]: next(x for x in servers if x.process and x.process.pid == s["pid"])
            for s in client.get("/api/v1/servers").json()["items"]
        }
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        counts: dict[str, int] = {}
        for job_id in ids:
            for attempt in attempts_of(observer, job_id):
                if attempt["state"] == "RUNNING":
                    counts[attempt["server_id"]] = counts.get(attempt["server_id"], 0) + 1
        if counts:
            time.sleep(0.5)  # let them get going
            victim_id = max(counts, key=lambda k: counts[k])
            victim = by_id[victim_id]
            return victim, victim_id, [s for s in servers if s is not victim]
        time.sleep(0.2)
    raise AssertionError("no replica ever ran a job")


def check_outcome(
    survivor: ChidoriServer, ids: list[int], hit: list[int], markers: Path, sampler: LimitSampler
) -> None:
    done = {job_id: survivor.wait(job_id, timeout=400) for job_id in ids}
    assert all(job["state"] == "SUCCEEDED" for job in done.values()), {
        k: (v["state"], v["reason"]) for k, v in done.items() if v["state"] != "SUCCEEDED"
    }
    for job_id in ids:
        attempts = attempts_of(survivor, job_id)
        if job_id in hit:
            assert [a["state"] for a in attempts] == ["LOST", "SUCCEEDED"], (job_id, attempts)
        else:
            assert [a["state"] for a in attempts] == ["SUCCEEDED"], (job_id, attempts)
    # No two attempts of a job ever ran at the same time: attempt 1's last tick comes before
    # attempt 2's first.
    for job_id in hit:
        first, second = markers / f"job-{job_id}-attempt-1", markers / f"job-{job_id}-attempt-2"
        if first.exists() and second.exists():
            assert float(first.read_text().split()[-1]) < float(second.read_text().split()[0])
    assert 1 <= sampler.peak <= LIMIT


def test_killing_a_replica_loses_no_job_and_runs_its_jobs_once_more(
    cluster_of_three: list[ChidoriServer], tmp_path: Path
) -> None:
    markers = shared_markers(tmp_path)
    sampler = LimitSampler(cluster_of_three)
    sampler.start()
    try:
        ids = submit_mix(cluster_of_three, markers)
        victim, victim_id, (a, b) = pick_victim(cluster_of_three, ids)
        victim.kill()
        hit = active_on(a, victim_id, ids)  # what it ran when it died
        assert hit
        check_outcome(b, ids, hit, markers, sampler)
    finally:
        sampler.stop_event.set()
        sampler.join()


def test_a_frozen_replica_stops_its_drivers_and_does_not_overwrite_the_retry(
    cluster_of_three: list[ChidoriServer], tmp_path: Path
) -> None:
    markers = shared_markers(tmp_path)
    sampler = LimitSampler(cluster_of_three)
    sampler.start()
    try:
        ids = submit_mix(cluster_of_three, markers)
        victim, victim_id, (a, b) = pick_victim(cluster_of_three, ids)
        assert victim.process is not None
        victim.process.send_signal(signal.SIGSTOP)
        hit = active_on(a, victim_id, ids)  # what it ran when it froze
        assert hit
        # Frozen well past its lease: the others take its jobs over.
        deadline = time.monotonic() + 60
        while not all(len(attempts_of(a, job_id)) >= 2 for job_id in hit):
            assert time.monotonic() < deadline, "the frozen replica's jobs were not taken over"
            time.sleep(0.2)
        victim.process.send_signal(signal.SIGCONT)
        check_outcome(b, ids, hit, markers, sampler)
        # Resumed, the replica recorded nothing over the new attempts.
        time.sleep(LEASE)
        for job_id in hit:
            assert [x["state"] for x in attempts_of(a, job_id)] == ["LOST", "SUCCEEDED"]
    finally:
        sampler.stop_event.set()
        sampler.join()


def test_a_replica_frozen_between_claim_and_spawn_never_starts_the_superseded_attempt(
    postgres_schema_url: str, tmp_path: Path
) -> None:
    """Replica A commits a claim, then freezes (SIGSTOP) before it starts the driver: a hook
    pauses it there. B finds the attempt expired, runs the job again to the end. A resumes:
    it must not start the old attempt's driver (no log, no process, nothing recorded)."""
    env = {
        "CHIDORI_DATABASE_URL": postgres_schema_url,
        "CHIDORI_SECRET_KEY": "shared-secret",
        "CHIDORI_LEASE_SECONDS": "3",
    }
    a = ChidoriServer(
        tmp_path / "home-a", env={**env, "CHIDORI_TEST_PAUSE_BEFORE_SPAWN": "2"}
    ).start()
    b = ChidoriServer(tmp_path / "home-b", env=env)
    try:
        job = a.submit(kind="python", application="tests/jobs/sleeper.py", args=["1"])
        marker = tmp_path / "home-a" / "run" / f"before-spawn-{job['id']}"
        deadline = time.monotonic() + 30
        while not marker.exists():
            assert time.monotonic() < deadline, "A never claimed the job"
            time.sleep(0.01)
        assert a.process is not None
        a.process.send_signal(signal.SIGSTOP)
        try:
            b.start()
            done = b.wait(job["id"], timeout=120)
            assert done["state"] == "SUCCEEDED", done
        finally:
            a.process.send_signal(signal.SIGCONT)
        time.sleep(4)  # A's pause ends and its launch goes on
        assert [x["state"] for x in attempts_of(b, job["id"])] == ["LOST", "SUCCEEDED"]
        assert not (tmp_path / "home-a" / "logs" / str(job["id"])).exists()
        assert "was taken over while this server was held up" in a.server_log()
        assert b.wait(job["id"])["state"] == "SUCCEEDED"
    finally:
        a.stop()
        b.stop()
