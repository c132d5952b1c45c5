"""Live Spark progress (docs/progress.md): the pure parser (events to summary), the bounded
event-log reader, the store's records on SQLite and PostgreSQL, and real Spark jobs on a real
server: progress seen moving, the final summary, a failed task, a `kind: python` job, a hostile
job, and collection turned off."""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from chidori.domain.errors import NotFound
from chidori.domain.records import JobQuery, Outcome
from chidori.domain.spark_progress import MAX_LISTED_STAGES, MAX_STAGES, ProgressTracker
from chidori.domain.states import AttemptState
from chidori.host.spark_progress import EventLogReader, SparkProgressCollector
from chidori.store import Database, Repositories
from chidori.store.models import JobRow
from chidori.store.spark_progress import ProgressRepository
from tests.server import TERMINAL, ChidoriServer
from tests.test_store import claim, spec

STAGES_APP = "tests/jobs/spark_stages.py"


# ---- events as Spark's JsonProtocol writes them (the fields the parser reads) ------------------


def job_start(job: int, stages: list[tuple[int, int]], at: int = 1000) -> dict[str, Any]:
    return {
        "Event": "SparkListenerJobStart",
        "Job ID": job,
        "Submission Time": at,
        "Stage Infos": [
            {"Stage ID": s, "Stage Attempt ID": 0, "Stage Name": f"stage {s}", "Number of Tasks": n}
            for s, n in stages
        ],
        "Stage IDs": [s for s, _ in stages],
    }


def stage_submitted(stage: int, tasks: int, at: int = 1000) -> dict[str, Any]:
    info = {"Stage ID": stage, "Stage Attempt ID": 0, "Number of Tasks": tasks}
    return {"Event": "SparkListenerStageSubmitted", "Stage Info": {**info, "Submission Time": at}}


def stage_completed(stage: int, at: int, failure: str | None = None) -> dict[str, Any]:
    info: dict[str, Any] = {"Stage ID": stage, "Stage Attempt ID": 0, "Completion Time": at}
    if failure:
        info["Failure Reason"] = failure
    return {"Event": "SparkListenerStageCompleted", "Stage Info": info}


def task_end(stage: int, index: int, reason: str = "Success", **metrics: int) -> dict[str, Any]:
    return {
        "Event": "SparkListenerTaskEnd",
        "Stage ID": stage,
        "Stage Attempt ID": 0,
        "Task End Reason": {"Reason": reason},
        "Task Info": {"Index": index, "Failed": reason != "Success", "Killed": False},
        "Task Metrics": {
            "Disk Bytes Spilled": metrics.get("spill", 0),
            "Input Metrics": {"Bytes Read": metrics.get("input", 0)},
            "Output Metrics": {"Bytes Written": 0},
            "Shuffle Read Metrics": {
                "Remote Bytes Read": 0,
                "Local Bytes Read": metrics.get("read", 0),
            },
            "Shuffle Write Metrics": {"Shuffle Bytes Written": metrics.get("write", 0)},
        },
    }


def job_end(job: int, ok: bool = True) -> dict[str, Any]:
    result = {"Result": "JobSucceeded"} if ok else {"Result": "JobFailed", "Exception": {}}
    return {"Event": "SparkListenerJobEnd", "Job ID": job, "Job Result": result}


def fed(*events: object, since: int = 0) -> ProgressTracker:
    tracker = ProgressTracker(since)
    for event in events:
        tracker.feed(event)
    return tracker


# ---- the parser ------------------------------------------------------------------------------


def test_a_shuffle_job_counts_stages_and_tasks_as_they_end() -> None:
    tracker = fed(job_start(0, [(0, 2), (1, 2)]), stage_submitted(0, 2, at=1000))
    assert tracker.counts() == {
        "jobs_done": 0, "jobs_total": 1, "jobs_failed": 0,
        "stages_done": 0, "stages_total": 2, "stages_active": 1, "stages_failed": 0,
        "tasks_done": 0, "tasks_total": 2, "tasks_failed": 0,
    }  # fmt: skip
    for event in (
        task_end(0, 0, write=100, input=10),
        task_end(0, 1, write=50),
        stage_completed(0, at=1500),
        stage_submitted(1, 2, at=1500),
        task_end(1, 0, read=150, spill=7),
    ):
        tracker.feed(event)
    counts = tracker.counts()
    assert (counts["tasks_done"], counts["tasks_total"], counts["stages_done"]) == (3, 4, 1)
    first, second = tracker.stages()
    assert first["state"] == "COMPLETE" and first["duration_ms"] == 500
    assert first["shuffle_write_bytes"] == 150 and first["input_bytes"] == 10
    assert second["state"] == "ACTIVE" and second["shuffle_read_bytes"] == 150
    assert second["spill_bytes"] == 7 and second["duration_ms"] is None


def test_a_failed_task_and_job_are_counted_and_unrun_stages_skipped() -> None:
    tracker = fed(
        job_start(0, [(0, 2), (1, 2)]),
        stage_submitted(0, 2),
        task_end(0, 0, reason="ExceptionFailure"),
        task_end(0, 1, reason="TaskKilled"),  # killed, not failed
        stage_completed(0, at=2000, failure="Job aborted"),
        job_end(0, ok=False),
    )
    counts = tracker.counts()
    assert counts["tasks_failed"] == 1 and counts["jobs_failed"] == 1
    assert counts["stages_failed"] == 1 and counts["jobs_done"] == 0
    assert [s["state"] for s in tracker.stages()] == ["FAILED", "SKIPPED"]


def test_a_task_that_succeeds_twice_counts_once() -> None:
    tracker = fed(job_start(0, [(0, 1)]), stage_submitted(0, 1), task_end(0, 0), task_end(0, 0))
    assert tracker.counts()["tasks_done"] == 1


def test_jobs_before_a_warm_hand_over_are_left_out() -> None:
    tracker = fed(
        job_start(0, [(0, 1)], at=10),  # the warm-up
        stage_submitted(0, 1),
        task_end(0, 0),
        job_end(0),
        job_start(1, [(1, 4)], at=5000),
        stage_submitted(1, 4),
        since=1000,
    )
    counts = tracker.counts()
    assert (counts["jobs_total"], counts["stages_total"], counts["tasks_total"]) == (1, 1, 4)
    assert counts["tasks_done"] == 0


@pytest.mark.parametrize(
    "garbage",
    [
        None, 3, "text", [], {"Event": 7}, {"Event": "SparkListenerTaskEnd"},
        {"Event": "SparkListenerJobStart", "Job ID": "x", "Stage Infos": "no"},
        {"Event": "SparkListenerStageSubmitted", "Stage Info": {"Stage ID": -5,
         "Number of Tasks": 1e300, "Stage Name": 7}},
        {"Event": "SparkListenerTaskEnd", "Stage ID": 0, "Task Metrics": {"Input Metrics": 5}},
        {"Event": "SparkListenerStageCompleted", "Stage Info": []},
    ],
)  # fmt: skip
def test_malformed_events_change_nothing_or_stay_bounded(garbage: object) -> None:
    tracker = fed(job_start(0, [(0, 1)]), stage_submitted(0, 1), garbage)
    counts = tracker.counts()
    assert all(isinstance(v, int) and 0 <= v < 2**63 for v in counts.values())
    for stage in tracker.stages():
        assert isinstance(stage["name"], str) and stage["tasks_total"] < 2**63


def test_memory_and_the_listed_stages_are_capped() -> None:
    tracker = ProgressTracker()
    for stage in range(MAX_STAGES * 3):
        tracker.feed(stage_submitted(stage, 1))
        tracker.feed(task_end(stage, 0))
        tracker.feed(stage_completed(stage, at=2000))
    assert len(tracker._stages) <= MAX_STAGES
    listed = tracker.stages()
    assert len(listed) == MAX_LISTED_STAGES
    assert listed[-1]["stage_id"] == MAX_STAGES * 3 - 1  # the newest last


# ---- the event-log reader ------------------------------------------------------------------


def write_lines(path: Path, events: list[object]) -> None:
    with open(path, "a") as handle:
        handle.writelines(json.dumps(e) + "\n" for e in events)


def test_the_reader_tails_a_rolling_log_across_files_and_partial_lines(tmp_path: Path) -> None:
    folder = tmp_path / "eventlog_v2_local-1"
    folder.mkdir()
    first = folder / "events_1_local-1"
    write_lines(first, [job_start(0, [(0, 2)])])
    with open(first, "a") as handle:
        handle.write(json.dumps(stage_submitted(0, 2))[:20])  # cut in the middle
    reader = EventLogReader(tmp_path, "local-1", owner_uid=None)
    assert [e["Event"] for e in reader.events()] == ["SparkListenerJobStart"]  # type: ignore[index]
    with open(first, "a") as handle:
        handle.write(json.dumps(stage_submitted(0, 2))[20:] + "\n")
    write_lines(folder / "events_2_local-1", [task_end(0, 0)])
    names = [e["Event"] for e in reader.events()]  # type: ignore[index]
    assert names == ["SparkListenerStageSubmitted", "SparkListenerTaskEnd"]


def test_the_reader_refuses_links_other_owners_and_odd_app_ids(tmp_path: Path) -> None:
    target = tmp_path / "secret"
    write_lines(target, [job_start(0, [(0, 1)])])
    (tmp_path / "local-2.inprogress").symlink_to(target)
    assert list(EventLogReader(tmp_path, "local-2", None).events()) == []
    os.link(target, tmp_path / "local-3")  # a second name of someone else's file
    assert list(EventLogReader(tmp_path, "local-3", None).events()) == []
    write_lines(tmp_path / "local-4", [job_start(0, [(0, 1)])])
    assert list(EventLogReader(tmp_path, "local-4", os.getuid() + 1).events()) == []
    assert len(list(EventLogReader(tmp_path, "local-4", os.getuid()).events())) == 1
    assert list(EventLogReader(tmp_path, "../secret", None).events()) == []


def test_the_reader_skips_overlong_lines_and_reads_a_bounded_amount(tmp_path: Path) -> None:
    path = tmp_path / "local-5"
    with open(path, "wb") as handle:
        handle.write(b"x" * 5000 + b"\n" + b"[" * 100_000 + b"\n" + os.urandom(3000) + b"\n")
        handle.write(json.dumps(job_start(0, [(0, 1)])).encode() + b"\n")
    reader = EventLogReader(tmp_path, "local-5", None, read_limit=4096, line_limit=4000)
    seen: list[object] = []
    for _ in range(100):
        before = reader.total
        seen += reader.events()
        assert reader.total - before <= 4096
    assert [e["Event"] for e in seen] == ["SparkListenerJobStart"]  # type: ignore[index]


def test_the_collector_writes_at_a_bounded_rate_and_once_final(tmp_path: Path) -> None:
    written: list[dict[str, Any]] = []
    collector = SparkProgressCollector(
        tmp_path, lambda j, a, p: written.append(p), read_interval=0, write_interval=3600
    )
    log = tmp_path / "local-6.inprogress"
    write_lines(log, [job_start(0, [(0, 3)]), stage_submitted(0, 3)])
    collector.poll(1, 1, "local-6", None, 0)
    write_lines(log, [task_end(0, 0), task_end(0, 1)])
    collector.poll(1, 1, "local-6", None, 0)  # changed, but the last write is too recent
    assert len(written) == 1 and written[0]["tasks_done"] == 0 and not written[0]["final"]
    write_lines(log, [task_end(0, 2), stage_completed(0, 9000), job_end(0)])
    collector.finish(1, 1)
    assert written[-1]["final"] and written[-1]["tasks_done"] == 3 and written[-1]["jobs_done"] == 1
    assert collector.tracking() == []


# ---- the store -----------------------------------------------------------------------------


@pytest.fixture
def repos(store: Database) -> Repositories:
    return Repositories.of(store)


def test_progress_is_kept_per_attempt_and_shown_only_for_the_current_one(
    repos: Repositories,
) -> None:
    progress = ProgressRepository(repos.db)
    job, _ = repos.jobs.create_job(spec(max_retries=1), "a")
    assert progress.latest(job.id) is None
    claim(repos)
    tracker = fed(job_start(0, [(0, 2)]), stage_submitted(0, 2), task_end(0, 0, write=5))
    record = {"updated_at": "2026-12-07T21:00:00+00:00", "final": False, **tracker.counts()}
    progress.record(job.id, 1, {**record, "stages": tracker.stages()})
    shown = repos.jobs.get_job(job.id).progress
    assert shown is not None and shown["tasks_done"] == 1 and "stages" not in shown
    [listed] = repos.jobs.list_jobs(JobQuery()).items
    assert listed.progress == shown
    [attempt] = repos.jobs.list_attempts(job.id)
    assert attempt.progress is not None and attempt.progress["tasks_total"] == 2
    latest = progress.latest(job.id)
    assert latest is not None and latest["stages"][0]["shuffle_write_bytes"] == 5
    progress.record(job.id, 1, {**record, "final": True, "stages": []})  # written again
    assert progress.latest(job.id) == {**record, "final": True, "stages": []}
    repos.attempts.finish_attempt(job.id, 1, Outcome(AttemptState.FAILED, "boom", 1), "s1")
    with repos.db.writing() as session:  # the retry may start at once
        row = session.get(JobRow, job.id)
        assert row is not None
        row.not_before = None
    claim(repos)
    assert repos.jobs.get_job(job.id).progress is None  # attempt 2 has none yet
    assert progress.latest(job.id) is None
    assert repos.jobs.list_attempts(job.id)[0].progress is not None  # attempt 1 keeps its own


def test_progress_of_a_missing_job_is_not_found(repos: Repositories) -> None:
    with pytest.raises(NotFound):
        ProgressRepository(repos.db).latest(987654)
    ProgressRepository(repos.db).record(987654, 1, {"updated_at": "x", "stages": []})  # no-op


# ---- real Spark jobs on a real server ----------------------------------------------------


@pytest.fixture(scope="module")
def progress_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChidoriServer]:
    with ChidoriServer(tmp_path_factory.mktemp("progress-server")) as running:
        yield running


@pytest.fixture(scope="module")
def submitted(progress_server: ChidoriServer) -> dict[str, dict[str, Any]]:
    """The module's jobs, submitted together so they run side by side."""
    server = progress_server
    return {
        "stages": server.submit(application=STAGES_APP, args=["1.0", "6"], name="stages"),
        "fail": server.submit(application=STAGES_APP, args=["0.2", "4", "fail"], name="fail"),
        "hostile": server.submit(
            application=STAGES_APP, args=["0.2", "2", "hostile"], name="hostile"
        ),
        "python": server.submit(
            application="tests/jobs/sleeper.py", args=["1"], kind="python", name="plain"
        ),
    }


@pytest.mark.spark
def test_progress_is_seen_moving_while_the_job_runs(
    progress_server: ChidoriServer, submitted: dict[str, dict[str, Any]]
) -> None:
    job_id = submitted["stages"]["id"]
    seen: list[int] = []
    deadline = time.monotonic() + 240
    with progress_server.client() as client:
        while time.monotonic() < deadline:
            job = client.get(f"/api/v1/jobs/{job_id}").json()
            if job["state"] in TERMINAL:
                break
            if job["state"] == "RUNNING" and job["progress"] is not None:
                assert job["progress"]["final"] is False
                seen.append(job["progress"]["tasks_done"])
                listed = client.get("/api/v1/jobs", params={"q": "stages"}).json()["items"]
                [item] = [i for i in listed if i["id"] == job_id]
                assert set(item["progress"] or {}) <= set(job["progress"])  # no stage list
            time.sleep(0.5)
    assert any(later > earlier for earlier, later in itertools.pairwise(seen)), seen


@pytest.mark.spark
def test_the_final_summary_has_every_stage_with_durations_and_shuffle_bytes(
    progress_server: ChidoriServer, submitted: dict[str, dict[str, Any]]
) -> None:
    job = progress_server.wait(submitted["stages"]["id"])
    assert job["state"] == "SUCCEEDED", job
    assert job["progress"]["final"] is True
    with progress_server.client() as client:
        summary = client.get(f"/api/v1/jobs/{job['id']}/progress").json()
        [attempt] = client.get(f"/api/v1/jobs/{job['id']}/attempts").json()["items"]
    assert attempt["progress"] == job["progress"]
    assert summary["final"] and summary["jobs_done"] == summary["jobs_total"] == 2
    assert summary["tasks_done"] == summary["tasks_total"] == 18
    stages = summary["stages"]
    assert len(stages) == summary["stages_total"] == summary["stages_done"] == 3
    assert all(s["state"] == "COMPLETE" and s["duration_ms"] > 0 for s in stages), stages
    assert stages[0]["shuffle_write_bytes"] > 0 and stages[1]["shuffle_read_bytes"] > 0


@pytest.mark.spark
def test_a_failed_task_is_counted(
    progress_server: ChidoriServer, submitted: dict[str, dict[str, Any]]
) -> None:
    job = progress_server.wait(submitted["fail"]["id"])
    assert job["state"] == "SUCCEEDED", job  # the driver caught the failed Spark job
    progress = job["progress"]
    assert progress["tasks_failed"] >= 1 and progress["jobs_failed"] == 1
    assert progress["stages_failed"] == 1 and progress["jobs_done"] == 2


@pytest.mark.spark
def test_a_python_job_has_no_progress(
    progress_server: ChidoriServer, submitted: dict[str, dict[str, Any]]
) -> None:
    job = progress_server.wait(submitted["python"]["id"])
    assert job["state"] == "SUCCEEDED" and job["progress"] is None
    with progress_server.client() as client:
        assert client.get(f"/api/v1/jobs/{job['id']}/progress").json() == {"progress": None}
        missing = client.get("/api/v1/jobs/987654321/progress")
    assert missing.status_code == 404 and missing.json()["error"]["code"]


@pytest.mark.spark
def test_a_hostile_event_log_spoils_only_its_own_record(
    progress_server: ChidoriServer, submitted: dict[str, dict[str, Any]]
) -> None:
    stages = progress_server.wait(submitted["stages"]["id"])
    with progress_server.client() as client:
        before = client.get(f"/api/v1/jobs/{stages['id']}/progress").json()
        hostile = progress_server.wait(submitted["hostile"]["id"])
        assert client.get("/healthz").status_code == 200
        after = client.get(f"/api/v1/jobs/{stages['id']}/progress").json()
        spoiled = client.get(f"/api/v1/jobs/{hostile['id']}/progress").json()
    assert hostile["state"] == "SUCCEEDED", hostile
    assert after == before
    assert spoiled["final"] and len(spoiled["stages"]) <= MAX_LISTED_STAGES
    assert all(isinstance(spoiled[k], int) and spoiled[k] >= 0 for k in ("tasks_total",))
    assert all(isinstance(s["name"], str) and len(s["name"]) <= 200 for s in spoiled["stages"])


@pytest.mark.spark
def test_a_share_link_serves_the_same_progress(
    progress_server: ChidoriServer, submitted: dict[str, dict[str, Any]]
) -> None:
    job = progress_server.wait(submitted["stages"]["id"])
    with progress_server.client() as client:
        url = client.post(f"/api/v1/jobs/{job['id']}/share", json={}).json()["url"]
        expected = client.get(f"/api/v1/jobs/{job['id']}/progress").json()
    token = url.rstrip("/").rsplit("/", 1)[-1]
    shared = httpx.get(f"{progress_server.url}/s/{token}/progress", timeout=30)
    assert shared.status_code == 200
    answer = shared.json()
    same_time = datetime.fromisoformat(answer.pop("updated_at").replace("Z", "+00:00"))
    assert same_time == datetime.fromisoformat(expected.pop("updated_at").replace("Z", "+00:00"))
    assert answer == expected
    assert httpx.get(f"{progress_server.url}/s/nope/progress", timeout=30).status_code == 404


@pytest.mark.spark
def test_collection_turned_off_gives_no_progress(
    tmp_path: Path, submitted: dict[str, dict[str, Any]], progress_server: ChidoriServer
) -> None:
    for key in submitted:  # one Spark job at a time on this machine
        progress_server.wait(submitted[key]["id"])
    env = {"CHIDORI_SPARK_PROGRESS": "0"}
    with ChidoriServer(tmp_path / "off", env=env) as server:
        job = server.submit(application=STAGES_APP, args=["0.1", "2"], name="off")
        done = server.wait(job["id"])
        assert done["state"] == "SUCCEEDED", done
        assert done["progress"] is None
        with server.client() as client:
            assert client.get(f"/api/v1/jobs/{job['id']}/progress").json() == {"progress": None}
