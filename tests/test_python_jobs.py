"""Plain Python jobs through a live server: outcome, logs, cancel, timeout, retries, uploads."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from chidori.host.processes import is_alive, tagged_processes
from tests.server import REPO, ChidoriServer, processes_of_uid

JOBS = "tests/jobs"


def run_python(server: ChidoriServer, script: str, *args: str, **spec: object) -> dict[str, object]:
    job = server.submit(kind="python", application=f"{JOBS}/{script}", args=list(args), **spec)
    return server.wait(int(job["id"]))


def test_training_example_succeeds_and_its_log_holds_the_accuracy(server: ChidoriServer) -> None:
    job = server.submit(
        kind="python", application="examples/train.py", name="train", schema="ml", table="model"
    )
    done = server.wait(job["id"])
    assert done["state"] == "SUCCEEDED" and done["exit_code"] == 0 and done["reason"] is None
    assert done["started_at"] and done["finished_at"] and done["duration_seconds"] >= 0
    assert "accuracy: 0." in server.log(job["id"])
    with server.client() as client:
        events = client.get(f"/api/v1/jobs/{job['id']}/events").json()["items"]
        attempts = client.get(f"/api/v1/jobs/{job['id']}/attempts").json()["items"]
    assert [e["state"] for e in events if e["type"] == "state"] == [
        "QUEUED",
        "ADMITTED",
        "RUNNING",
        "SUCCEEDED",
    ]
    assert all(e["time"] and e["actor"] for e in events)
    assert len(attempts) == 1 and attempts[0]["state"] == "SUCCEEDED" and attempts[0]["pid"]


def test_a_job_that_exits_at_once_still_records_its_start_and_log(server: ChidoriServer) -> None:
    """A driver may exit before its start is written: its end must wait for that, or the job
    would skip RUNNING and lose its pid and log path."""
    ids = [server.submit(kind="python", application="bench/jobs/stamp.py")["id"] for _ in range(30)]
    with server.client() as client:
        for job_id in ids:
            assert server.wait(job_id)["state"] == "SUCCEEDED"
            states = [
                e["state"] for e in client.get(f"/api/v1/jobs/{job_id}/events").json()["items"]
            ]
            assert states.index("RUNNING") < states.index("SUCCEEDED"), states
            assert server.log(job_id).startswith("started ")


def test_failing_job_ends_failed_with_the_error_as_reason(server: ChidoriServer) -> None:
    done = run_python(server, "crash.py")
    assert done["state"] == "FAILED" and done["exit_code"] == 1
    assert "RuntimeError: crash.py failed on purpose" in str(done["reason"])
    assert "about to crash" in server.log(int(done["id"]))  # type: ignore[call-overload]


def test_failed_job_is_retried_up_to_max_retries(server: ChidoriServer) -> None:
    done = run_python(server, "crash.py", max_retries=1)
    assert done["state"] == "FAILED" and done["attempts"] == 2
    with server.client() as client:
        attempts = client.get(f"/api/v1/jobs/{done['id']}/attempts").json()["items"]
        assert [a["state"] for a in attempts] == ["FAILED", "FAILED"]
        first_log = client.get(f"/api/v1/jobs/{done['id']}/logs", params={"attempt": 1}).text
    assert "about to crash" in first_log


def test_cancelling_a_running_job_stops_its_whole_process_tree(server: ChidoriServer) -> None:
    job = server.submit(kind="python", application=f"{JOBS}/sleeper.py", args=["300", "--child"])
    server.wait(job["id"], {"RUNNING"})
    deadline = time.monotonic() + 10
    while "child" not in server.log(job["id"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(tagged_processes(job["id"])) >= 2  # the script and its child
    started = time.monotonic()
    with server.client() as client:
        response = client.delete(f"/api/v1/jobs/{job['id']}")
    assert response.status_code == 200 and response.json()["cancel_requested"]
    done = server.wait(job["id"], timeout=30)
    assert done["state"] == "CANCELLED"
    assert time.monotonic() - started < 10
    assert tagged_processes(job["id"]) == []


def test_processes_a_finished_job_leaves_behind_are_stopped(server: ChidoriServer) -> None:
    """A child left in the driver's group is stopped as the job ends; one that left the group
    (its own session) is found by its tag and stopped by the next stray sweep (about 1 s)."""
    for flag in ("--child", "--detached-child"):
        job = server.submit(kind="python", application=f"{JOBS}/sleeper.py", args=["0", flag])
        done = server.wait(job["id"])
        assert done["state"] == "SUCCEEDED", done
        log = server.log(job["id"])
        # The child's pid as the job saw it means nothing outside a sandbox's PID namespace:
        # look for any process of the job's identity (or, unsandboxed, that pid).
        uid = int(log.split("uid ")[1].split()[0])
        child = int(log.split("child ")[1].split()[0])

        deadline = time.monotonic() + 10
        while _left_behind(uid, child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _left_behind(uid, child), flag
        assert tagged_processes(job["id"]) == []


def test_cancelling_a_queued_job_is_immediate(tmp_path: Path) -> None:
    env = {"CHIDORI_MAX_RUNNING_JOBS": "1"}
    with ChidoriServer(tmp_path / "home", env=env) as server:
        blocker = server.submit(kind="python", application=f"{JOBS}/sleeper.py", args=["300"])
        waiting = server.submit(kind="python", application=f"{JOBS}/sleeper.py", args=["1"])
        server.wait(blocker["id"], {"RUNNING"})
        with server.client() as client:
            assert client.get(f"/api/v1/jobs/{waiting['id']}").json()["state"] == "QUEUED"
            cancelled = client.delete(f"/api/v1/jobs/{waiting['id']}").json()
            assert cancelled["state"] == "CANCELLED"
            client.delete(f"/api/v1/jobs/{blocker['id']}")
        assert server.wait(blocker["id"])["state"] == "CANCELLED"


def test_a_driver_that_cannot_start_fails_its_job_and_frees_the_slot_at_once(
    tmp_path: Path,
) -> None:
    """A driver that cannot be started (its file went away after submission) fails the job,
    and the slot goes to the next job at once, not at the scheduler's next tick (1 s)."""
    apps = tmp_path / "apps"
    apps.mkdir()
    script = apps / "gone.py"
    script.write_text("print('never runs')\n")
    env = {"CHIDORI_MAX_RUNNING_JOBS": "0"}
    with ChidoriServer(tmp_path / "home", env=env, app_roots=[REPO, apps]) as server:
        ids = [server.submit(kind="python", application=str(script))["id"] for _ in range(6)]
        script.unlink()
        with server.client() as client:
            limits = {"max_running_jobs": 1, "max_memory": None, "max_cores": None}
            assert client.put("/api/v1/admin/limits", json={**limits, "clusters": {}}).is_success
        released = time.monotonic()
        done = [server.wait(job_id, timeout=30) for job_id in ids]
        elapsed = time.monotonic() - released
    for job in done:
        assert job["state"] == "FAILED" and "could not start the driver" in job["reason"], job
    assert elapsed < 4, elapsed  # a tick per job would take 5 s or more


def test_a_job_over_its_timeout_is_stopped_and_failed(server: ChidoriServer) -> None:
    done = run_python(server, "sleeper.py", "300", "--child", timeout="2s")
    assert done["state"] == "FAILED" and "timed out after 2 s" in str(done["reason"])
    assert tagged_processes(int(done["id"])) == []  # type: ignore[call-overload]


def test_logs_by_tail_offset_follow_and_download(server: ChidoriServer) -> None:
    job = server.submit(kind="python", application=f"{JOBS}/chatty.py", args=["2000"])
    with server.client() as client:
        with client.stream(
            "GET", f"/api/v1/jobs/{job['id']}/logs", params={"follow": True}
        ) as stream:
            followed = b"".join(stream.iter_bytes()).decode()
        assert server.wait(job["id"])["state"] == "SUCCEEDED"
        lines = followed.splitlines()
        assert lines[0] == "line 00000" and lines[-1] == "line 01999" and len(lines) == 2000
        tail = client.get(f"/api/v1/jobs/{job['id']}/logs", params={"tail": 3})
        assert tail.text.splitlines() == ["line 01997", "line 01998", "line 01999"]
        offset = int(tail.headers["x-log-offset"])
        assert offset == int(tail.headers["x-log-size"])
        assert client.get(f"/api/v1/jobs/{job['id']}/logs", params={"offset": offset}).text == ""
        part = client.get(f"/api/v1/jobs/{job['id']}/logs", params={"offset": 11})
        assert part.text.startswith("line 00001")
        download = client.get(f"/api/v1/jobs/{job['id']}/logs/download")
        assert download.status_code == 200 and download.text == followed
        assert "attachment" in download.headers["content-disposition"]


def test_uploaded_application_runs(server: ChidoriServer, tmp_path: Path) -> None:
    script = tmp_path / "hello.py"
    script.write_text("import sys\nprint('hello from an upload', sys.argv[1:])\n")
    with server.client() as client, open(script, "rb") as handle:
        uploaded = client.post("/api/v1/uploads", files={"file": ("hello.py", handle)})
    assert uploaded.status_code == 201
    uri = uploaded.json()["uri"]
    assert uri.startswith("upload://") and uri.endswith("/hello.py")
    job = server.submit(kind="python", application=uri, args=["x"])
    assert server.wait(job["id"])["state"] == "SUCCEEDED"
    assert "hello from an upload ['x']" in server.log(job["id"])


def test_restart_keeps_every_job_and_its_logs(tmp_path: Path) -> None:
    server = ChidoriServer(tmp_path / "home").start()
    try:
        job = server.submit(kind="python", application="examples/train.py", name="keep-me")
        done = server.wait(job["id"])
        log = server.log(job["id"])
        server.stop()
        server.start()
        with server.client() as client:
            again = client.get(f"/api/v1/jobs/{job['id']}").json()
        assert again == done
        assert server.log(job["id"]) == log and "accuracy" in log
    finally:
        server.stop()


def _left_behind(uid: int, child: int) -> bool:
    return bool(processes_of_uid(uid)) if uid != os.getuid() else is_alive(child)


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def start_sleeper(server: ChidoriServer) -> tuple[int, int]:
    """A running sleeper job and the pid of its driver process (as the server recorded it:
    the sandbox's launcher, which lives exactly as long as the job's processes)."""
    job = server.submit(kind="python", application=f"{JOBS}/sleeper.py", args=["600"])
    server.wait(job["id"], {"RUNNING"})
    with server.client() as client:
        [attempt] = client.get(f"/api/v1/jobs/{job['id']}/attempts").json()["items"]
    return int(job["id"]), int(attempt["pid"])


def test_a_killed_server_takes_its_drivers_down_and_the_job_is_retried_on_restart(
    tmp_path: Path,
) -> None:
    server = ChidoriServer(tmp_path / "home").start()
    try:
        job_id, driver_pid = start_sleeper(server)
        server.kill()
        # The driver must not outlive its server (the watchdog gets PDEATHSIG and stops it).
        wait_until(lambda: not is_alive(driver_pid), 15, "the driver outlived its server")
        server.start()
        job_now = server.wait(job_id, {"RUNNING"}, timeout=30)
        assert job_now["attempts"] == 2
        with server.client() as client:
            attempts = client.get(f"/api/v1/jobs/{job_id}/attempts").json()["items"]
            assert attempts[0]["state"] == "LOST"
            assert "server restarted" in attempts[0]["reason"]
            client.delete(f"/api/v1/jobs/{job_id}")
        assert server.wait(job_id)["state"] == "CANCELLED"
    finally:
        server.stop()


def test_a_frozen_server_s_drivers_are_stopped_before_their_lease_runs_out(
    tmp_path: Path,
) -> None:
    server = ChidoriServer(tmp_path / "home", env={"CHIDORI_LEASE_SECONDS": "3"}).start()
    try:
        job_id, driver_pid = start_sleeper(server)
        assert server.process is not None
        server.process.send_signal(signal.SIGSTOP)
        try:
            started = time.monotonic()
            wait_until(lambda: not is_alive(driver_pid), 10, "the driver kept running")
            assert time.monotonic() - started < 3 + 1  # before the 3 s lease could expire
        finally:
            server.process.send_signal(signal.SIGCONT)
        job_now = server.wait(job_id, {"RUNNING"}, timeout=30)
        assert job_now["attempts"] == 2  # the fenced attempt is LOST and the job runs again
        with server.client() as client:
            first = client.get(f"/api/v1/jobs/{job_id}/attempts").json()["items"][0]
            assert first["state"] == "LOST" and "watchdog stopped the driver" in first["reason"]
            client.delete(f"/api/v1/jobs/{job_id}")
        server.wait(job_id)
    finally:
        server.stop()


def test_a_job_whose_driver_cannot_be_started_fails_with_the_reason_and_frees_its_slot(
    tmp_path: Path,
) -> None:
    """A spec the OS cannot turn into a process (a NUL byte in an argument: the API refuses
    it, so it is written straight into the store here) fails its attempt with a reason; it
    does not hold a running slot forever."""
    from chidori.domain.spec import JobSpec
    from chidori.store import JobRepository, open_database

    home = tmp_path / "home"
    with ChidoriServer(home, env={"CHIDORI_MAX_RUNNING_JOBS": "1"}) as server:
        store = open_database(f"sqlite:///{home / 'chidori.db'}")
        try:
            spec = JobSpec.model_construct(
                **{
                    **JobSpec(kind="python", application=f"{REPO}/{JOBS}/sleeper.py").model_dump(),
                    "args": ["a\x00b"],
                }
            )
            bad, _ = JobRepository(store).create_job(spec, "admin")
        finally:
            store.dispose()
        done = server.wait(bad.id, timeout=60)
        assert done["state"] == "FAILED", done
        assert done["reason"]
        after = server.submit(kind="python", application=f"{JOBS}/sleeper.py", args=["0"])
        assert server.wait(after["id"], timeout=60)["state"] == "SUCCEEDED"
