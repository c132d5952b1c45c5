"""The scheduler in process: a real `Scheduler` (SQLite store, driver host, lease thread,
watchdog process) over a fake backend whose drivers are tiny Python processes."""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import pytest

from chidori.backends.base import DriverCommand, HostedBackend, LaunchRequest
from chidori.config import ClusterConfig, IsolationConfig
from chidori.domain.limits import LimitsDoc
from chidori.domain.records import Attempt, Job, JobQuery, Outcome
from chidori.domain.spec import JobSpec
from chidori.domain.states import AttemptState, JobState
from chidori.host.isolation import Isolation, runtime_paths
from chidori.host.processes import is_alive, tagged_processes
from chidori.host.scheduler import Scheduler, SchedulerOptions
from chidori.host.scheduler.leases import WATCHDOG_PATH
from chidori.storage.artifacts import ArtifactStore
from chidori.store import Repositories, open_database
from chidori.store.admission import AdmissionStore

LEASE_SECONDS = 3.0  # renewed every 0.6 s; the watchdog fences after 2.4 s without renewal
T = TypeVar("T")


class FakeBackend(HostedBackend):
    """Runs each attempt as `python -c` with a behaviour read from the job's args: the n-th
    arg is what attempt n does (the last one repeats), "exit CODE" or "sleep SECONDS".

    It does not run Spark, reads neither the application nor any conf, stages no files, and
    its drivers print no application id; it keeps no warm drivers (`warm_conf` is None, as
    the base class has it). Its processes carry the job tags a real backend sets
    (`CHIDORI_JOB_ID`, `CHIDORI_ATTEMPT`) so they can be found and stopped. `cleanup` only
    records which attempts it was asked to clean up after."""

    def __init__(self, cluster: ClusterConfig) -> None:
        super().__init__(cluster)
        self.cleaned: list[tuple[int, int]] = []

    def driver_command(self, request: LaunchRequest) -> DriverCommand:
        args = request.job.spec.args or ["exit 0"]
        verb, value = args[min(request.attempt, len(args)) - 1].split()
        if verb == "exit":
            code = f"import sys; sys.exit({int(value)})"
        elif verb == "sleep":
            code = f"import time; time.sleep({float(value)})"
        else:
            raise ValueError(f"unknown behaviour {verb!r}")
        env = {"CHIDORI_JOB_ID": str(request.job.id), "CHIDORI_ATTEMPT": str(request.attempt)}
        return DriverCommand([sys.executable, "-I", "-S", "-c", code], env, request.work_dir)

    def cleanup(self, job_id: int, attempt: int) -> None:
        self.cleaned.append((job_id, attempt))


@dataclass
class Harness:
    scheduler: Scheduler
    repos: Repositories
    backend: FakeBackend
    server_id: str
    stopped: bool = False

    def stop(self) -> None:
        self.stopped = True
        self.scheduler.stop()

    def submit(self, *behaviours: str, **fields: object) -> Job:
        spec = JobSpec.model_validate(
            {"kind": "python", "application": "fake.py", "args": list(behaviours), **fields}
        )
        job, _ = self.repos.jobs.create_job(spec, "alice")
        self.scheduler.wake()
        return job

    def job(self, job_id: int) -> Job:
        return self.repos.jobs.get_job(job_id)

    def attempts(self, job_id: int) -> list[Attempt]:
        return self.repos.jobs.list_attempts(job_id)

    def wait_for(self, job_id: int, *states: JobState, timeout: float = 10) -> Job:
        return until(lambda: self.job(job_id), lambda j: j.state in states, timeout)

    def active(self) -> list[Job]:
        """The jobs that hold a slot, read in one query (one snapshot)."""
        query = JobQuery(states=(JobState.ADMITTED, JobState.RUNNING), limit=100)
        return self.repos.jobs.list_jobs(query).items


def until(read: Callable[[], T], done: Callable[[T], bool], timeout: float = 10) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if done(value):
            return value
        assert time.monotonic() < deadline, f"timed out; last seen: {value}"
        time.sleep(0.02)


def watchdogs(server_id: str) -> list[int]:
    """Pids of the live watchdog processes of this server."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if WATCHDOG_PATH.encode() in argv and server_id.encode() in argv:
            found.append(int(entry.name))
    return [pid for pid in found if is_alive(pid)]


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Callable[..., Harness]]:
    """Builds (and starts, unless told not to) a scheduler, as `chidori.server` wires one;
    stops it at the end of the test if the test did not."""
    built: list[Harness] = []
    db = open_database(f"sqlite:///{tmp_path}/c.db")
    db.migrate()
    repos = Repositories.of(db)
    home = tmp_path / "home"
    home.mkdir()

    def build(
        max_running_jobs: int = 4, start: bool = True, shutdown_mode: str = "requeue"
    ) -> Harness:
        isolation = Isolation(IsolationConfig(mode="none"), home, runtime_paths(), [], None, None)
        isolation.start()
        # Unique: a watchdog stops every process tagged with its server's id, and other test
        # runs may share this machine.
        server_id = f"test-{secrets.token_hex(4)}"
        backend = FakeBackend(ClusterConfig(name="local", type="local", master="local[1]"))
        scheduler = Scheduler(
            repos,
            AdmissionStore(db, LimitsDoc(max_running_jobs=max_running_jobs)),
            {"local": backend},
            ArtifactStore(home / "artifacts", [], 1 << 20),
            SchedulerOptions(
                server_id=server_id,
                host="test-host",
                work_dir=home / "work",
                heartbeat_file=home / "run" / f"heartbeat-{server_id}",
                lease_seconds=LEASE_SECONDS,
                shutdown_mode=shutdown_mode,
                tick_seconds=0.1,
            ),
            home / "logs",
            1.0,
            isolation,
        )
        harness = Harness(scheduler, repos, backend, server_id)
        built.append(harness)
        if start:
            scheduler.start()
        return harness

    yield build
    for harness in built:
        if not harness.stopped:
            harness.stop()
    db.dispose()


def test_the_running_jobs_limit_is_never_exceeded(make: Callable[..., Harness]) -> None:
    h = make(max_running_jobs=2)
    jobs = [h.submit("sleep 0.5") for _ in range(6)]
    most = most_running = 0
    while not all(h.job(j.id).state.terminal for j in jobs):
        active = len(h.active())
        running = len(h.scheduler.drivers.running())
        assert active <= 2 and running <= 2, (active, running)
        most, most_running = max(most, active), max(most_running, running)
        time.sleep(0.01)
    assert most == most_running == 2  # the limit was used, not merely respected
    assert [h.job(j.id).state for j in jobs] == [JobState.SUCCEEDED] * 6
    assert all(h.job(j.id).attempts == 1 for j in jobs)


def test_a_failing_job_is_retried_max_retries_times_then_failed(
    make: Callable[..., Harness], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The store's back-off before a retry (2 s, then 4 s) is not what is tested here.
    monkeypatch.setattr(
        "chidori.store.attempts.retry_backoff", lambda failed: timedelta(seconds=0.1)
    )
    h = make()
    job = h.submit("exit 1", max_retries=2)
    done = h.wait_for(job.id, JobState.FAILED, JobState.SUCCEEDED, JobState.CANCELLED)
    assert done.state is JobState.FAILED and done.attempts == 3, done
    attempts = h.attempts(job.id)
    assert [a.number for a in attempts] == [1, 2, 3]
    assert all(a.state is AttemptState.FAILED and a.exit_code == 1 for a in attempts), attempts
    assert all(a.reason == "driver exited with code 1" for a in attempts), attempts
    time.sleep(0.5)  # no fourth attempt comes
    assert h.job(job.id).attempts == 3


def test_a_cancelled_running_job_ends_cancelled_and_its_process_is_gone(
    make: Callable[..., Harness],
) -> None:
    h = make()
    job = h.submit("sleep 60")
    h.wait_for(job.id, JobState.RUNNING)
    [attempt] = h.attempts(job.id)
    assert attempt.pid is not None and is_alive(attempt.pid)
    h.repos.jobs.request_cancel(job.id, "alice")
    done = h.wait_for(job.id, JobState.CANCELLED, JobState.FAILED, JobState.SUCCEEDED)
    assert done.state is JobState.CANCELLED, done
    [attempt] = h.attempts(job.id)
    assert attempt.state is AttemptState.CANCELLED and attempt.reason == "cancelled on request"
    assert attempt.pid is not None and not is_alive(attempt.pid)
    assert tagged_processes(job.id, server_id=h.server_id) == []
    assert h.scheduler.drivers.running() == []


def test_a_driver_whose_attempt_was_taken_over_is_stopped_and_cannot_overwrite_the_retry(
    make: Callable[..., Harness],
) -> None:
    h = make()
    # Attempt 1 would sleep a minute; the retry runs for a few seconds, then succeeds.
    job = h.submit("sleep 60", "sleep 4")
    h.wait_for(job.id, JobState.RUNNING)
    [first] = h.attempts(job.id)
    pid = first.pid
    assert pid is not None
    # Another replica found the lease expired (this server was frozen, say) and took over.
    taken_over = "another replica found its lease expired"
    h.repos.attempts.finish_attempt(
        job.id, 1, Outcome(AttemptState.LOST, taken_over), "other-replica"
    )
    # The lease thread finds attempt 1 no longer this server's and stops its driver; its end
    # is reported while the retry runs.
    until(lambda: is_alive(pid), lambda alive: not alive, timeout=5)
    until(h.scheduler.drivers.running, lambda running: (job.id, 1) not in running, timeout=5)
    h.scheduler.keep_leases()  # renewing again leaves the retry alone
    attempts = until(
        lambda: h.attempts(job.id), lambda found: found[-1].state is not AttemptState.STARTING
    )
    assert [(a.number, a.state) for a in attempts] == [
        (1, AttemptState.LOST),
        (2, AttemptState.RUNNING),
    ], attempts
    assert attempts[0].reason == taken_over  # not the stopped driver's own account
    current = h.job(job.id)
    assert current.state is JobState.RUNNING and current.attempts == 2, current
    assert h.scheduler.drivers.running() == [(job.id, 2)]
    done = h.wait_for(job.id, JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)
    assert done.state is JobState.SUCCEEDED and done.attempts == 2, done
    assert tagged_processes(job.id, server_id=h.server_id) == []


def test_orphans_of_a_previous_run_are_lost_and_requeued(
    make: Callable[..., Harness],
) -> None:
    h = make(start=False)
    job = h.submit("exit 0")
    previous = f"previous-{secrets.token_hex(4)}"
    # A previous run (another server id on the same SQLite file) claimed the job and started
    # its driver, then died: the attempt is left active and its process still runs.
    [claim] = (
        AdmissionStore(h.repos.db, LimitsDoc(max_running_jobs=4))
        .admit(previous, "test-host", ["local"], 60)
        .claims
    )
    env = {
        "CHIDORI_JOB_ID": str(job.id),
        "CHIDORI_ATTEMPT": "1",
        "CHIDORI_SERVER_ID": previous,
    }
    leftover = subprocess.Popen(
        [sys.executable, "-I", "-S", "-c", "import time; time.sleep(60)"],
        env=env,
        start_new_session=True,
    )
    try:
        h.repos.attempts.mark_running(
            job.id, claim.attempt, leftover.pid, "/dev/null", previous, ready=True
        )
        assert h.scheduler.recover_orphans(all_servers=False) == 0  # not this server's
        assert h.job(job.id).state is JobState.RUNNING
        assert h.scheduler.recover_orphans(all_servers=True) == 1
        assert leftover.wait(timeout=5) is not None  # stopped by its tag
    finally:
        leftover.kill()
        leftover.wait()
    [attempt] = h.attempts(job.id)
    assert attempt.state is AttemptState.LOST
    assert attempt.reason == "server restarted while the driver ran"
    assert h.job(job.id).state is JobState.QUEUED
    assert h.backend.cleaned == [(job.id, 1)]
    h.scheduler.start()
    h.scheduler.wake()
    done = h.wait_for(job.id, JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)
    assert done.state is JobState.SUCCEEDED and done.attempts == 2, done


def test_stop_in_requeue_mode_hands_running_jobs_back_to_the_queue(
    make: Callable[..., Harness],
) -> None:
    h = make()
    jobs = [h.submit("sleep 60") for _ in range(2)]
    for job in jobs:
        h.wait_for(job.id, JobState.RUNNING)
    pids = [a.pid for job in jobs for a in h.attempts(job.id)]
    assert watchdogs(h.server_id), "the watchdog process should run while the scheduler does"
    h.stop()
    for job in jobs:
        current = h.job(job.id)
        assert current.state is JobState.QUEUED and current.attempts == 1, current
        [attempt] = h.attempts(job.id)
        assert attempt.state is AttemptState.LOST, attempt
        assert attempt.reason == "server shutting down"
        assert tagged_processes(job.id, server_id=h.server_id) == []
    assert not any(is_alive(pid) for pid in pids if pid is not None)
    assert h.scheduler.drivers.running() == []
    assert watchdogs(h.server_id) == []
    [server] = [
        s for s in h.repos.servers.list_servers(include_stopped=True) if s.id == h.server_id
    ]
    assert server.stopped_at is not None
