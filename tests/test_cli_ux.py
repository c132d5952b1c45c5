"""The CLI people live in, against one real server: the note for Chidori flags after APP, every
exit status, `--wait` progress lines, `jobs list` additions, bulk cancel, `open`, `history`.

Jobs are `kind: python` (fast); a held queue comes from a global limit of 0 running jobs."""

from __future__ import annotations

import io
import json
import os
import queue
import subprocess
import sys
import threading
import time
import webbrowser
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from chidori.cli import job_list, main
from chidori.cli.dataset_history import percentile
from chidori.cli.job_filters import parse_time
from chidori.cli.output import Output
from chidori.cli.progress_lines import ProgressLines
from chidori.cli.submit_flags import parse_submit
from chidori.cli.views.progress import progress_details, spark_progress_text
from tests.server import REPO, ChidoriServer, free_port

SLEEPER = str(REPO / "tests/jobs/sleeper.py")
UNLIMITED: dict[str, Any] = {
    "max_running_jobs": None,
    "max_memory": None,
    "max_cores": None,
    "clusters": {},
}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChidoriServer]:
    with ChidoriServer(tmp_path_factory.mktemp("cli-ux")) as server:
        yield server


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("cli-ux-apps")
    sources = {
        "ok": "import sys\nprint('args', sys.argv[1:])\n",
        "fail": "raise ValueError('boom: the input is empty')\n",
    }
    paths = {}
    for name, source in sources.items():
        paths[name] = folder / f"{name}.py"
        paths[name].write_text(source)
    return paths


@pytest.fixture
def env(live: ChidoriServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """The CLI pointed at the live server, in this process (`main`) and for subprocesses."""
    values = {
        "CHIDORI_URL": live.url,
        "CHIDORI_TOKEN": live.token,
        "CHIDORI_HOME": str(tmp_path / "cli-home"),
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return {**os.environ, **values}


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> Callable[..., Ran]:
    """``cli(*args)``: one command through ``main`` in this process (a process costs seconds
    on a loaded machine); ``subprocess_cli`` where the real process matters."""
    capsys.readouterr()

    def run(*args: str) -> Ran:
        code = main(list(args))
        captured = capsys.readouterr()
        return Ran(code, captured.out, captured.err)

    return run


def subprocess_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chidori", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )


def set_limits(server: ChidoriServer, **limits: Any) -> None:
    with server.client() as client:
        response = client.put("/api/v1/admin/limits", json=UNLIMITED | limits)
        assert response.status_code == 200, response.text


@contextmanager
def held(server: ChidoriServer) -> Iterator[None]:
    """No job may run until the block ends (or the caller lifts the limit earlier)."""
    set_limits(server, max_running_jobs=0)
    try:
        yield
    finally:
        set_limits(server)


def live_ids(server: ChidoriServer, label: str) -> list[int]:
    with server.client() as client:
        items = client.get("/api/v1/jobs", params={"label": label}).json()["items"]
        return [int(item["id"]) for item in items]


def get_job(server: ChidoriServer, job_id: int) -> dict[str, Any]:
    with server.client() as client:
        job: dict[str, Any] = client.get(f"/api/v1/jobs/{job_id}").json()
        return job


def submit_python(server: ChidoriServer, application: str, *args: str, **spec: Any) -> int:
    job = server.submit(kind="python", application=application, args=list(args), **spec)
    return int(job["id"])


class Lines:
    """A subprocess's stream read line by line in a thread, each with its arrival time."""

    def __init__(self, stream: Any) -> None:
        self.seen: list[tuple[float, str]] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def until(self, text: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            self.seen.append((time.monotonic(), line))
            if text in line:
                return line
        raise AssertionError(f"no line with {text!r} in {[s for _, s in self.seen]}")

    def rest(self) -> list[str]:
        lines = []
        while (line := self._queue.get(timeout=30)) is not None:
            self.seen.append((time.monotonic(), line))
            lines.append(line)
        return lines


# -- Chidori's flags after APP -------------------------------------------------------------


def test_a_chidori_flag_after_app_draws_a_note_and_dash_dash_says_it_is_meant(
    cli: Callable[..., Ran], live: ChidoriServer, apps: dict[str, Path]
) -> None:
    done = cli("submit", "--kind", "python", str(apps["ok"]), "--wait", "--queue=q")
    assert done.returncode == 0, done.stderr
    assert "note: --wait, --queue after APP go to the application" in done.stderr
    assert "put them before APP (chidori submit --wait ..." in done.stderr
    job_id = int(done.stdout)  # not waited for: the id alone
    assert get_job(live, job_id)["spec"]["args"] == ["--wait", "--queue=q"]

    # spark-submit passes a `--` after APP on to the application: so does Chidori
    done = cli("submit", "--kind", "python", str(apps["ok"]), "--", "--wait")
    assert done.returncode == 0, done.stderr
    assert "note:" not in done.stderr
    assert get_job(live, int(done.stdout))["spec"]["args"] == ["--", "--wait"]

    # `--` before APP (which spark-submit refuses) is Chidori's own and dropped
    plan = parse_submit(["--kind", "python", "--", "s3a://b/app.py", "--wait"])
    assert (plan.notes, plan.spec["args"]) == ([], ["--wait"])
    # a `--` that is an option's value is not the separator
    plan = parse_submit(["--name", "--", "s3a://b/app.py", "--follow"])
    assert plan.notes[0].startswith("--follow after APP goes to the application")
    # spark-submit's own flags after APP are the application's business: no note
    assert parse_submit(["s3a://b/app.py", "--conf", "x=y", "--name", "n"]).notes == []


# -- exit statuses -------------------------------------------------------------------------


def test_wait_exits_0_on_success_and_1_on_failure_with_the_reason(
    cli: Callable[..., Ran], live: ChidoriServer, apps: dict[str, Path]
) -> None:
    done = cli("submit", "--kind", "python", "--wait", str(apps["ok"]))
    assert done.returncode == 0, done.stderr
    job_id = int(done.stdout)
    assert get_job(live, job_id)["state"] == "SUCCEEDED"

    done = cli("submit", "--kind", "python", "--wait", str(apps["fail"]))
    assert done.returncode == 1, done.stderr
    job_id = int(done.stdout)
    failed = get_job(live, job_id)
    assert failed["state"] == "FAILED"
    assert done.stderr.rstrip().endswith(f"job {job_id} FAILED: {failed['reason']}")
    assert "boom: the input is empty" in failed["reason"]


def test_wait_exits_4_when_the_job_times_out(cli: Callable[..., Ran], live: ChidoriServer) -> None:
    done = cli("submit", "--kind", "python", "--timeout", "1", "--wait", SLEEPER, "30")
    assert done.returncode == 4, done.stderr
    job = get_job(live, int(done.stdout))
    assert job["state"] == "FAILED"
    assert job["reason"].startswith("timed out after 1 s")
    assert done.stderr.rstrip().endswith(f"FAILED: {job['reason']}")


def test_wait_exits_3_when_the_job_is_cancelled(
    cli: Callable[..., Ran], live: ChidoriServer
) -> None:
    result: list[Ran] = []
    waiting = threading.Thread(
        target=lambda: result.append(
            cli("submit", "--kind", "python", "--label", "suite=cancel", "--wait", SLEEPER, "30")
        )
    )
    waiting.start()
    try:
        deadline = time.monotonic() + 60
        while not (found := live_ids(live, "suite:cancel")) and time.monotonic() < deadline:
            time.sleep(0.1)
        (job_id,) = found
        live.wait(job_id, {"RUNNING"}, timeout=60)
        with live.client() as client:
            assert client.delete(f"/api/v1/jobs/{job_id}").status_code == 200
    finally:
        waiting.join(timeout=60)
    (done,) = result
    assert done.returncode == 3
    assert done.stdout == f"{job_id}\n"
    assert f"job {job_id} CANCELLED" in done.stderr


def test_usage_auth_not_found_and_unreachable_have_their_own_statuses(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["jobs", "list", "--state", "finished"]) == 2
    assert "unknown state 'finished'" in capsys.readouterr().err
    assert main(["submit", "--kind", "python"]) == 2
    assert "missing APP" in capsys.readouterr().err

    assert main(["jobs", "show", "1", "--token", "not-a-token"]) == 5
    assert "token" in capsys.readouterr().err

    for command in (["jobs", "show"], ["jobs", "cancel"], ["jobs", "logs"], ["open"]):
        assert main([*command, "999999"]) == 6, command
        assert capsys.readouterr().err.startswith("error: ")

    closed = f"http://127.0.0.1:{free_port()}"
    assert main(["jobs", "show", "1", "--server", closed]) == 7
    assert f"cannot reach the Chidori server at {closed}" in capsys.readouterr().err

    # the real process exits with the same statuses, and --help lists them
    assert main(["--help"]) == 0
    helped = capsys.readouterr().out
    for status in ("  1  the job FAILED", "  4  the job FAILED by its own timeout", "  7  "):
        assert status in helped
    # the real process exits with the same statuses
    assert subprocess_cli(env, "jobs", "show", "999999").returncode == 6


# -- progress lines ------------------------------------------------------------------------


def test_wait_shows_the_waiting_reason_then_elapsed_time_and_the_ui_url(
    env: dict[str, str], live: ChidoriServer
) -> None:
    with held(live):
        proc = subprocess.Popen(
            [sys.executable, "-m", "chidori", "submit", "--kind", "python", "--wait",
             SLEEPER, "11"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
        )  # fmt: skip
        try:
            err = Lines(proc.stderr)
            assert proc.stdout is not None
            job_id = int(proc.stdout.readline())
            assert err.until("view it at") == f"view it at {live.url}/ui/jobs/{job_id}"
            assert err.until("QUEUED").endswith(f"job {job_id}  QUEUED")  # no reason yet
            queued = err.until("limit 0")
            reason = get_job(live, job_id)["waiting_reason"]
            assert queued.endswith(f"job {job_id}  QUEUED  {reason}")
            time.sleep(1)
        finally:
            set_limits(live)
        try:
            running = err.until("RUNNING")
            assert "  running " in running
            heartbeat = err.until("RUNNING")  # nothing changed: one line ~10 s later
            rest = err.rest()
            assert proc.wait(timeout=30) == 0
        finally:
            proc.kill()
            proc.wait()
    times = {line: at for at, line in err.seen}
    assert 8.5 <= times[heartbeat] - times[running] <= 13
    assert "  running 1" in heartbeat  # 10s or 11s elapsed
    assert any("SUCCEEDED" in line for line in rest)
    progress_lines = [line for _, line in err.seen if f"job {job_id}  " in line]
    assert len(progress_lines) <= 6  # queued (then why), admitted, running, 1 heartbeat, end


# -- jobs list -----------------------------------------------------------------------------


def test_jobs_list_cuts_names_shows_reasons_and_takes_states_and_times(
    cli: Callable[..., Ran], live: ChidoriServer, apps: dict[str, Path]
) -> None:
    long_name = "nightly-" + "x" * 40
    ok = submit_python(live, SLEEPER, "0", name=long_name, labels={"suite": "list"})
    done = cli("submit", "--kind", "python", "--label", "suite=list", "--wait",
               str(apps["fail"]))  # fmt: skip
    failed = int(done.stdout)
    live.wait(ok)
    reason = get_job(live, failed)["reason"]

    listed = cli("jobs", "list", "--label", "suite:list")
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split()[-1] == "REASON"
    assert [row.split()[0] for row in rows] == [str(failed), str(ok)]
    assert long_name not in listed.stdout
    assert "nightly-xxxxxxxxxxxxxxxxxxxxxxx…" in rows[1]
    assert reason[:40] in rows[0]
    wide = cli("jobs", "list", "--label", "suite:list", "--wide").stdout
    assert long_name in wide and reason in wide
    as_json = json.loads(cli("jobs", "list", "--label", "suite:list", "-o", "json").stdout)
    assert [item["name"] for item in as_json["items"]][1] == long_name

    def ids(*args: str) -> list[int]:
        done = cli("jobs", "list", "--label", "suite:list", "--json", *args)
        assert done.returncode == 0, done.stderr
        return [item["id"] for item in json.loads(done.stdout)["items"]]

    assert ids("--state", "failed,Cancelled") == [failed]
    assert ids("--state", "FAILED", "--state", "succeeded") == [failed, ok]
    today, tomorrow = date.today(), date.today() + timedelta(days=1)
    assert ids("--created-after", today.isoformat()) == [failed, ok]
    assert ids("--created-after", tomorrow.isoformat()) == []
    assert ids("--created-after", "1h") == [failed, ok]
    assert ids("--created-after", "today", "--created-before", "1h") == []
    assert ids("--created-before", "yesterday") == []
    bad = cli("jobs", "list", "--created-after", "last tuesday")
    assert bad.returncode == 2
    assert "--created-after expects ISO 8601, a date (2026-12-03), an age" in bad.stderr

    first = cli("jobs", "list", "--label", "suite:list", "--limit", "1")
    assert [row.split()[0] for row in first.stdout.splitlines()[1:]] == [str(failed)]
    hint = first.stderr.strip()
    assert hint.startswith("more jobs: the next page with --cursor ")
    cursor = hint.split("--cursor ")[1].split()[0]
    second = cli("jobs", "list", "--label", "suite:list", "--limit", "1", "--cursor", cursor)
    assert [row.split()[0] for row in second.stdout.splitlines()[1:]] == [str(ok)]
    assert second.stderr == ""


def test_relative_times_are_measured_from_now() -> None:
    from datetime import UTC, datetime

    now = datetime(2026, 12, 7, 15, 30, tzinfo=UTC)
    assert parse_time("--created-after", "30m", now) == (now - timedelta(minutes=30)).astimezone(
    ).isoformat()  # fmt: skip
    assert parse_time("--x", "2d", now) == (now - timedelta(days=2)).astimezone().isoformat()
    local = now.astimezone()
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    assert parse_time("--x", "Today", now) == midnight.isoformat()
    assert parse_time("--x", "yesterday", now) == (midnight - timedelta(days=1)).isoformat()
    assert parse_time("--x", "2026-12-03T10:00:00Z", now) == "2026-12-03T10:00:00+00:00"


# -- bulk cancel ---------------------------------------------------------------------------


def test_bulk_cancel_by_filter_asks_first_and_by_ids_reports_each(
    cli: Callable[..., Ran],
    live: ChidoriServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with held(live):
        waiting = [submit_python(live, SLEEPER, "0", labels={"suite": "bulk"}) for _ in range(3)]
        other = submit_python(live, SLEEPER, "0", labels={"suite": "other"})

        refused = cli("jobs", "cancel", "--state", "queued", "--label", "suite:bulk")
        assert refused.returncode == 2
        assert "refusing to cancel 3 jobs without a terminal to ask" in refused.stderr
        assert "--yes" in refused.stderr

        monkeypatch.setattr(job_list, "stdin_isatty", lambda: True)
        monkeypatch.setattr(job_list, "ask", lambda _prompt: "n")
        assert cli("jobs", "cancel", "--label", "suite:bulk").stderr.endswith("nothing cancelled\n")
        assert {get_job(live, i)["state"] for i in waiting} == {"QUEUED"}

        monkeypatch.setattr(job_list, "ask", lambda _prompt: "y")
        done = cli("jobs", "cancel", "--label", "suite:bulk", "--state", "QUEUED")
        assert done.returncode == 0
        assert done.stdout.splitlines() == [f"job {i} cancelled" for i in reversed(waiting)]

        done = cli("jobs", "cancel", str(waiting[0]), str(other), "999999")
        assert done.returncode == 6  # the first failure's status
        assert done.stdout.splitlines() == [
            f"job {waiting[0]} already ended (CANCELLED): nothing to cancel",
            f"job {other} cancelled",
        ]
        assert "job 999999:" in done.stderr
        assert get_job(live, other)["state"] == "CANCELLED"

        nothing = cli("jobs", "cancel", "--label", "suite:bulk", "--yes")
        assert (nothing.returncode, nothing.stderr) == (0, "no job matches these filters\n")
        assert cli("jobs", "cancel").returncode == 2
        assert cli("jobs", "cancel", "1", "--state", "queued").returncode == 2


# -- open and history ----------------------------------------------------------------------


def test_open_prints_the_ui_url_and_opens_no_browser_without_a_display(
    cli: Callable[..., Ran],
    live: ChidoriServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    job_id = submit_python(live, SLEEPER, "0")
    done = cli("open", str(job_id))
    assert (done.returncode, done.stdout) == (0, f"{live.url}/ui/jobs/{job_id}\n")
    page = httpx.get(done.stdout.strip())
    assert page.status_code in (200, 303)  # the page, or the way to it through the login

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert sys.platform == "linux"  # where a display is a variable

    def no_browser(url: str) -> bool:
        raise AssertionError(f"a browser was started for {url}")

    monkeypatch.setattr(webbrowser, "open", no_browser)
    done = cli("open", str(job_id), "--browser")
    assert (done.returncode, done.stdout) == (0, f"{live.url}/ui/jobs/{job_id}\n")
    assert "no display to open a browser on" in done.stderr


def test_history_lists_a_datasets_runs_with_p50_and_p95(
    cli: Callable[..., Ran], live: ChidoriServer, apps: dict[str, Path]
) -> None:
    dataset = {"schema": "ux", "table": "orders"}
    ids = [submit_python(live, SLEEPER, seconds, **dataset) for seconds in ("0", "0.5", "1")]
    done = cli("submit", "--kind", "python", "--schema", "ux", "--table", "orders",
               "--wait", str(apps["fail"]))  # fmt: skip
    ids.append(int(done.stdout))
    finished = [live.wait(i) for i in ids]

    shown = cli("history", "ux.orders")
    assert shown.returncode == 0, shown.stderr
    header, *rows, summary = shown.stdout.splitlines()
    assert header.split()[:3] == ["ID", "STATE", "STARTED"]
    assert [row.split()[0] for row in rows] == [str(i) for i in reversed(ids)]
    assert rows[0].split()[1] == "FAILED"
    durations = [float(j["duration_seconds"]) for j in finished if j["state"] == "SUCCEEDED"]
    assert len(durations) == 3
    p50, p95 = percentile(durations, 0.5), percentile(durations, 0.95)
    assert p50 == sorted(durations)[1] and p95 == max(durations)
    assert summary.startswith("4 runs, 3 succeeded, 1 failed; duration p50 ")
    as_json = json.loads(cli("history", "ux.orders", "--json").stdout)
    assert (as_json["p50_seconds"], as_json["p95_seconds"]) == (p50, p95)

    assert cli("history", "ux.nothing").stderr == "no runs of ux.nothing (that you may see)\n"
    bad = cli("history", "orders")
    assert bad.returncode == 2
    assert "expected SCHEMA.TABLE" in bad.stderr


# -- progress lines, unit --------------------------------------------------------------------


def test_spark_progress_renders_from_the_contract_and_skips_what_is_unknown() -> None:
    progress = {
        "updated_at": "2026-12-07T10:00:00Z", "final": False, "jobs_done": 1, "jobs_total": 2,
        "jobs_failed": 0, "stages_done": 3, "stages_total": 5, "stages_active": 1,
        "stages_failed": 0, "tasks_done": 120, "tasks_total": 200, "tasks_failed": 2,
    }  # fmt: skip
    assert spark_progress_text(progress) == "stages 3/5 · tasks 120/200 (2 failed)"
    assert spark_progress_text({**progress, "tasks_failed": 0}) == "stages 3/5 · tasks 120/200"
    assert spark_progress_text({"tasks_done": 4, "tasks_total": 8}) == "tasks 4/8"
    for unknown in (None, {}, "soon", {"stages_done": "3", "stages_total": 5}):
        assert spark_progress_text(unknown) is None
    running = {"id": 4, "state": "RUNNING", "kind": "spark", "started_at": None}
    assert progress_details({**running, "progress": progress, "start_type": "warm"})[1:] == [
        "warm start",
        "stages 3/5 · tasks 120/200 (2 failed)",
    ]
    cold = {**running, "start_type": "cold", "start_note": "the pool is empty"}
    assert progress_details(cold)[1:] == ["cold start (the pool is empty)"]  # no progress key


def test_progress_lines_print_changes_at_once_and_otherwise_one_per_heartbeat() -> None:
    err = io.StringIO()
    now = [0.0]
    lines = ProgressLines(Output(io.StringIO(), err, human=False), clock=lambda: now[0])
    job: dict[str, Any] = {"id": 4, "state": "RUNNING", "kind": "spark", "progress": None}

    def printed() -> list[str]:
        return [line.split("  ", 1)[1] for line in err.getvalue().splitlines()]

    lines.update(job)
    now[0] = 5.0
    lines.update(job)  # nothing new, 5 s after the last line: quiet
    assert len(printed()) == 1
    stage = {"stages_done": 1, "stages_total": 2, "tasks_done": 3, "tasks_total": 8}
    lines.update({**job, "progress": stage})  # Spark progress moved: at once
    now[0] = 14.0
    lines.update({**job, "progress": stage})  # 9 s: still quiet
    now[0] = 15.5
    lines.update({**job, "progress": stage})  # 10.5 s: the heartbeat
    assert [line.split("  ")[1] for line in printed()] == ["RUNNING"] * 3
    assert printed()[1].endswith("stages 1/2 · tasks 3/8")
    assert lines.poll_seconds(job) == 2.0  # a running Spark job: short polls for its progress
    assert lines.poll_seconds({"state": "QUEUED"}) == 1.0  # no reason yet: ask again soon
    assert lines.poll_seconds({"state": "QUEUED", "waiting_reason": "limit"}) == 10.0
