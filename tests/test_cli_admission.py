"""``chidori queues``, ``capacity``, ``admin limits|queues`` and waiting jobs, against a real
tiny server."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chidori.cli import jobs, main
from chidori.cli.admission import merge_limits, merge_queue
from chidori.cli.output import Output
from chidori.cli.views.admission import capacity_rows, queue_row
from chidori.cli.views.jobs import detail_pairs
from tests.test_cli_http import FakeServer, Reply, job


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeServer]:
    fake = FakeServer()
    fake.thread.start()
    monkeypatch.setenv("CHIDORI_URL", fake.url)
    monkeypatch.setenv("CHIDORI_TOKEN", "secret")
    monkeypatch.setenv("CHIDORI_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(jobs, "sleep", lambda _seconds: None)
    yield fake
    fake.httpd.shutdown()
    fake.httpd.server_close()


def body(request: Any) -> Any:
    return json.loads(request.body)


def queue(name: str = "etl", **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": name, "priority": 5, "weight": 3.0, "max_running_jobs": 4, "max_memory": "32g",
        "max_cores": None, "depth": 7, "running": 2,
        "reserved": {"jobs": 2, "memory": "6g", "cores": 4}, "oldest_wait_seconds": 185.2,
    }  # fmt: skip
    base.update(extra)
    return base


def limits(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "max_running_jobs": 8, "max_memory": "64g", "max_cores": None,
        "clusters": {"gpu": {"max_running_jobs": 2, "max_memory": None, "max_cores": 16}},
    }  # fmt: skip
    base.update(extra)
    return base


def capacity() -> dict[str, Any]:
    return {
        "limits": {"max_running_jobs": 8, "max_memory": "64g", "max_cores": None},
        "reserved": {"jobs": 3, "memory": "12g", "cores": 7},
        "free": {"jobs": 5, "memory": "52g", "cores": None},
        "waiting": 4,
        "clusters": {
            "local": {
                "limits": {"max_running_jobs": None, "max_memory": None, "max_cores": None},
                "reserved": {"jobs": 1, "memory": "4g", "cores": 2},
                "free": {"jobs": None, "memory": None, "cores": None},
            },
            "gpu": {
                "limits": {"max_running_jobs": 2, "max_memory": "16g", "max_cores": 8},
                "reserved": {"jobs": 2, "memory": "8g", "cores": 5},
                "free": {"jobs": 0, "memory": "8g", "cores": 3},
            },
        },
    }


# -- queues and capacity -------------------------------------------------------------------


def test_queues_prints_a_table_of_rank_weight_quota_depth_running_and_wait(
    server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    items = [
        queue(),
        queue("adhoc", priority=0, weight=0.5, max_running_jobs=1, max_memory=None,
              max_cores=1, depth=0, running=0, oldest_wait_seconds=None),
        queue("default", priority=0, weight=1.0, max_running_jobs=None, max_memory=None,
              depth=0, running=1, oldest_wait_seconds=None),
    ]  # fmt: skip
    server.route("GET", "/queues", Reply(200, {"items": items}))
    assert main(["queues"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "NAME", "PRIORITY", "WEIGHT", "QUOTA", "DEPTH", "RUNNING", "OLDEST", "WAIT"
    ]  # fmt: skip
    assert lines[1].split() == ["etl", "5", "3", "4", "jobs,", "32g", "7", "2", "3m05s"]
    assert lines[2].split() == ["adhoc", "0", "0.5", "1", "job,", "1", "core", "0", "0", "-"]
    assert lines[3].split() == ["default", "0", "1", "unlimited", "0", "1", "-"]
    (request,) = server.find("GET", "/queues")
    assert request.headers["authorization"] == "Bearer secret"

    assert main(["queues", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"items": items}


def test_capacity_shows_reserved_limit_and_free_globally_then_per_cluster(
    server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.route("GET", "/capacity", Reply(200, capacity()))
    assert main(["capacity"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["SCOPE", "JOBS", "MEMORY", "CORES"]
    assert lines[1].startswith("global ")
    assert "3 of 8 (5 free)" in lines[1]
    assert "12g of 64g (52g free)" in lines[1]
    assert lines[1].endswith("7 (unlimited)")
    assert lines[2].startswith("cluster gpu ")  # clusters by name
    assert "2 of 2 (0 free)" in lines[2]
    assert lines[2].endswith("5 of 8 (3 free)")
    assert lines[3].startswith("cluster local ")
    assert lines[3].count("(unlimited)") == 3
    assert lines[-1] == "waiting:  4 jobs"

    assert main(["capacity", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == capacity()

    server.route("GET", "/capacity", Reply(200, {**capacity(), "waiting": 1}))
    assert main(["capacity"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "waiting:  1 job"


def test_capacity_without_clusters_shows_the_global_row_only() -> None:
    doc = capacity()
    del doc["clusters"]
    assert [row[0] for row in capacity_rows(doc)] == ["global"]


# -- admin limits --------------------------------------------------------------------------


def test_admin_limits_show(server: FakeServer, capsys: pytest.CaptureFixture[str]) -> None:
    server.route("GET", "/admin/limits", Reply(200, limits()))
    assert main(["admin", "limits", "show"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["SCOPE", "MAX", "RUNNING", "JOBS", "MAX", "MEMORY", "MAX", "CORES"]
    assert lines[1].split() == ["global", "8", "64g", "unlimited"]
    assert lines[2].split() == ["cluster", "gpu", "2", "unlimited", "16"]

    assert main(["admin", "limits", "show", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == limits()


def test_admin_limits_set_reads_merges_and_puts_the_whole_document(
    server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.route("GET", "/admin/limits", Reply(200, limits()))
    stored = limits(max_running_jobs=None, max_cores=32)
    server.route("PUT", "/admin/limits", Reply(200, stored))
    args = ["admin", "limits", "set", "--max-running-jobs", "none", "--max-cores", "32", "--json"]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out) == stored
    (put,) = server.find("PUT", "/admin/limits")
    assert body(put) == {
        "max_running_jobs": None,
        "max_memory": "64g",
        "max_cores": 32,
        "clusters": {"gpu": {"max_running_jobs": 2, "max_memory": None, "max_cores": 16}},
    }
    assert [r.method for r in server.requests] == ["GET", "PUT"]


def test_admin_limits_set_for_a_cluster_changes_only_that_clusters_limits(
    server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.route("GET", "/admin/limits", Reply(200, limits()))
    server.route("PUT", "/admin/limits", Reply(200, limits()))
    assert main(["admin", "limits", "set", "--cluster", "gpu", "--max-memory", "48g"]) == 0
    assert "cluster gpu" in capsys.readouterr().out
    assert body(server.find("PUT", "/admin/limits")[0]) == limits(
        clusters={"gpu": {"max_running_jobs": 2, "max_memory": "48g", "max_cores": 16}}
    )

    # a cluster without limits yet starts unlimited
    code = main(["admin", "limits", "set", "--cluster", "spark-b", "--max-running-jobs", "3"])
    assert code == 0
    sent = body(server.find("PUT", "/admin/limits")[1])
    assert sent["max_running_jobs"] == 8  # the global limits stay as they are
    assert sent["clusters"] == {
        "gpu": {"max_running_jobs": 2, "max_memory": None, "max_cores": 16},
        "spark-b": {"max_running_jobs": 3, "max_memory": None, "max_cores": None},
    }


def test_admin_limits_set_refuses_bad_input_before_any_request(
    server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["admin", "limits", "set"]) == 2
    assert "nothing to change" in capsys.readouterr().err
    assert main(["admin", "limits", "set", "--cluster", "gpu"]) == 2
    assert "nothing to change" in capsys.readouterr().err
    assert main(["admin", "limits", "set", "--max-cores", "lots"]) == 2
    assert "expected a whole number or 'none'" in capsys.readouterr().err
    assert main(["admin", "limits", "set", "--max-running-jobs=-1"]) == 2
    assert "expected a number >= 0 or 'none'" in capsys.readouterr().err
    assert main(["admin", "limits", "set", "--cluster", " ", "--max-cores", "1"]) == 2
    assert "--cluster needs a cluster name" in capsys.readouterr().err
    assert server.requests == []


def test_admin_limits_set_as_a_non_admin_shows_the_servers_refusal(
    server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.route("GET", "/admin/limits", Reply(200, limits()))
    error = {"error": {"code": "forbidden", "message": "admins only"}}
    server.route("PUT", "/admin/limits", Reply(403, error))
    assert main(["admin", "limits", "set", "--max-memory", "1t"]) == 5  # auth
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "error: admins only\n"


def test_admin_limits_set_shows_a_field_error_from_the_server(
    server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.route("GET", "/admin/limits", Reply(200, limits()))
    detail = [{"loc": ["body", "max_memory"], "msg": "'lots' is not a size", "type": "value"}]
    server.route("PUT", "/admin/limits", Reply(422, {"detail": detail}))
    assert main(["admin", "limits", "set", "--max-memory", "lots"]) == 2
    assert "max_memory: 'lots' is not a size" in capsys.readouterr().err


def test_merge_limits_keeps_the_input_and_unknown_keys() -> None:
    current = limits(future_setting=True)
    before = json.loads(json.dumps(current))
    merged = merge_limits(current, {"max_memory": None})
    assert current == before
    assert merged == {**before, "max_memory": None}
    merged = merge_limits(current, {"max_cores": 4}, "gpu")
    assert current == before
    assert merged["clusters"]["gpu"] == {"max_running_jobs": 2, "max_memory": None, "max_cores": 4}
    assert merge_limits({"max_running_jobs": 1}, {"max_cores": 2}, "x") == {
        "max_running_jobs": 1,
        "clusters": {"x": {"max_running_jobs": None, "max_memory": None, "max_cores": 2}},
    }


# -- admin queues --------------------------------------------------------------------------


def test_admin_queues_set_merges_into_the_existing_queue_and_puts_only_settings(
    server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.route("GET", "/queues", Reply(200, {"items": [queue("adhoc"), queue("etl")]}))
    stored = {"priority": -2, "weight": 3.0, "max_running_jobs": 4, "max_memory": None,
              "max_cores": 12}  # fmt: skip
    server.route("PUT", "/admin/queues/etl", Reply(200, stored))
    code = main(
        ["admin", "queues", "set", "etl", "--priority", "-2", "--max-memory", "none",
         "--max-cores", "12"]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0
    (put,) = server.find("PUT", "/admin/queues/etl")
    assert body(put) == stored
    assert "created" not in captured.err
    assert "name:              etl\n" in captured.out  # the answer has no name: the argument's
    assert "priority:          -2\n" in captured.out
    assert "max memory:        unlimited\n" in captured.out
    assert "max cores:         12\n" in captured.out


def test_admin_queues_set_creates_a_new_queue_from_defaults(
    server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.route("GET", "/queues", Reply(200, {"items": [queue("etl")]}))
    stored = {"name": "ml", "priority": 0, "weight": 2.5, "max_running_jobs": None,
              "max_memory": None, "max_cores": None}  # fmt: skip
    server.route("PUT", "/admin/queues/ml", Reply(200, stored))
    assert main(["admin", "queues", "set", "ml", "--weight", "2.5", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == stored
    assert body(server.find("PUT", "/admin/queues/ml")[0]) == {
        "priority": 0,
        "weight": 2.5,
        "max_running_jobs": None,
        "max_memory": None,
        "max_cores": None,
    }

    # no options: a new queue with the defaults; an existing one is left alone
    assert main(["admin", "queues", "set", "ml"]) == 0
    assert "queue 'ml' created" in capsys.readouterr().err
    assert len(server.find("PUT", "/admin/queues/ml")) == 2
    assert main(["admin", "queues", "set", "etl"]) == 2
    assert "nothing to change: queue 'etl' exists" in capsys.readouterr().err
    assert server.find("PUT", "/admin/queues/etl") == []


def test_admin_queues_set_refuses_a_bad_weight_before_any_request(
    server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    for weight in ("0", "-1", "nan", "heavy"):
        assert main(["admin", "queues", "set", "etl", "--weight", weight]) == 2
        assert "--weight" in capsys.readouterr().err
    assert main(["admin", "queues", "set", "etl", "--priority", "high"]) == 2
    assert "expected a whole number" in capsys.readouterr().err
    assert server.requests == []


def test_admin_queues_set_quotes_the_queue_name_in_the_path(
    server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.route("GET", "/queues", Reply(200, {"items": []}))
    error = {"error": {"code": "not_found", "message": "bad name"}}
    server.route("PUT", "/admin/queues/a%2Fb", Reply(404, error))
    assert main(["admin", "queues", "set", "a/b", "--priority", "1"]) == 6  # not found
    assert "bad name" in capsys.readouterr().err
    assert [r.path for r in server.requests][-1] == "/api/v1/admin/queues/a%2Fb"


def test_merge_queue_drops_what_the_queue_list_reports_about_a_queue() -> None:
    assert merge_queue(queue(), {"weight": 1.5}) == {
        "priority": 5,
        "weight": 1.5,
        "max_running_jobs": 4,
        "max_memory": "32g",
        "max_cores": None,
    }


# -- jobs waiting for capacity -------------------------------------------------------------


def test_jobs_show_displays_the_waiting_reason_and_the_demand(
    server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    reason = "cluster 'gpu' memory limit 16g: needs 18g, 8g free"
    waiting = job(5, waiting_reason=reason, demand={"memory": "18g", "cores": 9})
    server.route("GET", "/jobs/5", Reply(200, waiting))
    server.route("GET", "/jobs/5/events", Reply(200, {"items": []}))
    assert main(["jobs", "show", "5"]) == 0
    out = capsys.readouterr().out
    assert f"waiting:       {reason}\n" in out
    assert "demand:        18g, 9 cores\n" in out

    running = job(6, "RUNNING", waiting_reason=None, demand={"memory": "1g", "cores": 1})
    keys = [key for key, _ in detail_pairs(running)]
    assert "waiting" not in keys
    assert dict(detail_pairs(running))["demand"] == "1g, 1 core"
    assert dict(detail_pairs(job(7)))["demand"] == "-"  # an older server sends none


def test_jobs_list_adds_a_reason_column_only_when_a_job_waits(
    server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    reason = "global running-jobs limit 8 reached (8 running)"
    server.route(
        "GET",
        "/jobs",
        Reply(200, {"items": [job(2, waiting_reason=reason), job(1, "RUNNING")]}),
        Reply(200, {"items": [job(1, "RUNNING")]}),
    )
    assert main(["jobs", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[-1] == "REASON"
    assert lines[1].endswith(f"  {reason}")
    assert lines[2].endswith("  -")
    assert [line.split()[0] for line in lines[1:]] == ["2", "1"]

    assert main(["jobs", "list"]) == 0
    assert "REASON" not in capsys.readouterr().out


def test_terminal_job_views_show_reasons_without_markup(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    stdout = io.StringIO()
    out = Output(stdout, io.StringIO(), human=True)
    reason = "queue 'etl' cores limit 4: needs [6], 0 free"
    waiting = job(3, name="[bold]x[/bold]", waiting_reason=reason, demand={"memory": "3g"})
    out.job_list([waiting])
    out.job_detail(waiting, [])
    printed = stdout.getvalue()
    assert "REASON" in printed
    assert "[bold]x[/bold]" in printed
    assert printed.count(reason) == 2
    assert "3g" in printed


@pytest.mark.parametrize(("columns", "shown"), [("100", False), ("120", True)])
def test_terminal_job_list_shows_reasons_only_with_room_for_them(
    monkeypatch: pytest.MonkeyPatch, columns: str, shown: bool
) -> None:
    monkeypatch.setenv("COLUMNS", columns)
    stdout = io.StringIO()
    reason = "global memory limit 64g: needs 70g, 12g free"
    Output(stdout, io.StringIO(), human=True).job_list([job(3, waiting_reason=reason)])
    lines = stdout.getvalue().splitlines()
    assert ("REASON" in lines[0]) is shown
    assert "CREATED" in lines[0]  # the other columns keep their width
    assert "2024-05-01 10:00:00" in lines[1]
    assert all(len(line) <= int(columns) for line in lines)


def test_queue_row_formats_weight_and_wait() -> None:
    row = queue_row(queue(weight=0.25, oldest_wait_seconds=4.0, max_memory=None))
    assert row == ["etl", "5", "0.25", "4 jobs", "7", "2", "4.0s"]
