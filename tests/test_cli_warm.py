"""``chidori admin warm-pool [show|set|reset]`` and how ``jobs show`` tells a warm start from
a cold one: rendering against a fake server, then set and read back on a real one."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chidori.cli import main
from chidori.cli.views.jobs import detail_pairs, start_text
from chidori.cli.views.warm_pools import warm_count_text, warm_pool_pairs
from tests.server import ChidoriServer
from tests.test_cli_http import FakeServer, Reply, job


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeServer]:
    server = FakeServer()
    server.thread.start()
    monkeypatch.setenv("CHIDORI_URL", server.url)
    monkeypatch.setenv("CHIDORI_TOKEN", "secret")
    monkeypatch.setenv("CHIDORI_HOME", str(tmp_path / "home"))
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


def driver(driver_id: str, state: str, **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": driver_id, "server_id": "srv-1", "state": state, "memory": "1g", "cores": 1,
        "pid": 4242, "created_at": "2024-05-01T10:00:00Z", "memory_in_use": "574m",
    }  # fmt: skip
    base.update(extra)
    return base


def pool(cluster: str = "local", size: int = 2, **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "cluster": cluster, "size": size, "configured_size": 1, "driver_memory": "1g",
        "driver_cores": 1, "conf": {"spark.sql.shuffle.partitions": "4"},
        "drivers": [driver("w1", "idle"), driver("w2", "starting", pid=None, memory_in_use=None)],
    }  # fmt: skip
    base.update(extra)
    return base


# -- against a fake server -----------------------------------------------------------------


def test_warm_pool_shows_every_pool_then_every_driver(
    fake: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    pools = [pool(), pool("spark-b", 0, configured_size=0, drivers=[])]
    fake.route("GET", "/warm-pool", Reply(200, {"items": pools}))
    assert main(["admin", "warm-pool"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["CLUSTER", "SIZE", "CONFIGURED", "DRIVER", "SIZE", "DRIVERS"]
    assert lines[1].split() == [
        "local",
        "2",
        "1",
        "1g,",
        "1",
        "core",
        "1",
        "idle,",
        "1",
        "starting",
    ]
    assert lines[2].split() == ["spark-b", "0", "0", "1g,", "1", "core", "none"]
    assert lines[3] == ""
    assert lines[4].split() == [
        "CLUSTER", "DRIVER", "STATE", "SERVER", "PID", "RESERVED", "IN", "USE", "CREATED",
    ]  # fmt: skip
    assert lines[5].split()[:8] == ["local", "w1", "idle", "srv-1", "4242", "1g,", "1", "core"]
    assert lines[5].split()[8] == "574m"
    assert lines[6].split()[:9] == [
        "local",
        "w2",
        "starting",
        "srv-1",
        "-",
        "1g,",
        "1",
        "core",
        "-",
    ]
    (request,) = fake.find("GET", "/warm-pool")
    assert request.headers["authorization"] == "Bearer secret"

    assert main(["admin", "warm-pool", "show", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"items": pools}


def test_warm_pool_without_drivers_says_so(
    fake: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.route("GET", "/warm-pool", Reply(200, {"items": [pool(size=0, drivers=[])]}))
    assert main(["admin", "warm-pool", "show"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "no warm drivers"


def test_warm_pool_set_puts_the_size_and_prints_the_pool(
    fake: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.route("PUT", "/admin/warm-pool/local", Reply(200, pool(size=3)))
    assert main(["admin", "warm-pool", "set", "local", "3"]) == 0
    out = capsys.readouterr().out
    assert json.loads(fake.find("PUT", "/admin/warm-pool/local")[0].body) == {"size": 3}
    assert "size:             3 per server\n" in out
    assert "configured size:  1 (overridden)\n" in out
    assert "conf:             spark.sql.shuffle.partitions=4\n" in out
    assert "drivers:          1 idle, 1 starting\n" in out
    assert "w2" in out

    fake.route("PUT", "/admin/warm-pool/local", Reply(200, pool(size=0, drivers=[])))
    assert main(["admin", "warm-pool", "set", "local", "0", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["size"] == 0
    assert json.loads(fake.find("PUT", "/admin/warm-pool/local")[1].body) == {"size": 0}


def test_warm_pool_reset_sends_null_and_quotes_the_cluster(
    fake: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.route("PUT", "/admin/warm-pool/a%2Fb", Reply(200, pool("a/b", 1)))
    assert main(["admin", "warm-pool", "reset", "a/b"]) == 0
    (put,) = fake.find("PUT", "/admin/warm-pool/a%2Fb")
    assert json.loads(put.body) == {"size": None}
    assert "configured size:  1\n" in capsys.readouterr().out


def test_warm_pool_set_refuses_bad_input_before_any_request(
    fake: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["admin", "warm-pool", "set", "local", "-1"]) == 2
    assert "expected a number >= 0" in capsys.readouterr().err
    assert main(["admin", "warm-pool", "set", "local", "many"]) == 2
    assert "expected a whole number" in capsys.readouterr().err
    assert main(["admin", "warm-pool", "set", " ", "1"]) == 2
    assert "CLUSTER needs a cluster name" in capsys.readouterr().err
    assert main(["admin", "warm-pool", "reset"]) == 2
    assert fake.requests == []


def test_warm_pool_shows_the_servers_refusal(
    fake: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    error = {"error": {"code": "not_found", "message": "no cluster named 'gpu'"}}
    fake.route("PUT", "/admin/warm-pool/gpu", Reply(404, error))
    assert main(["admin", "warm-pool", "set", "gpu", "1"]) == 6  # not found
    assert capsys.readouterr().err == "error: no cluster named 'gpu'\n"


def test_jobs_show_gives_the_start_type_and_where_the_time_went(
    fake: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    timed = {"queue_wait_seconds": 0.04, "startup_seconds": 0.6, "run_seconds": 185.0}
    warm = job(5, "SUCCEEDED", start_type="warm", start_note=None, **timed)
    fake.route("GET", "/jobs/5", Reply(200, warm))
    fake.route("GET", "/jobs/5/events", Reply(200, {"items": []}))
    assert main(["jobs", "show", "5"]) == 0
    out = capsys.readouterr().out
    assert "start:         warm\n" in out
    assert "queue wait:    0.0s\n" in out
    assert "start-up:      0.6s\n" in out
    assert "run time:      3m05s\n" in out

    note = "driver memory 4g differs from the warm pool's 1g"
    cold = job(6, "RUNNING", start_type="cold", start_note=note, startup_seconds=12.0)
    pairs = dict(detail_pairs(cold))
    assert pairs["start"] == f"cold ({note})"
    assert pairs["start-up"] == "12s"
    assert pairs["run time"] == "-"
    queued = dict(detail_pairs(job(7)))  # not started yet, or an older server
    assert [queued[k] for k in ("start", "queue wait", "start-up", "run time")] == ["-"] * 4


def test_start_and_count_texts() -> None:
    assert start_text({"start_type": "cold"}) == "cold"
    assert start_text({"start_type": None, "start_note": "x"}) == "-"
    drivers = [driver("a", "retiring"), driver("b", "idle"), driver("c", "idle")]
    assert warm_count_text({"drivers": drivers}) == "2 idle, 1 retiring"
    assert warm_count_text({"drivers": None}) == "none"
    assert dict(warm_pool_pairs(pool(size=0, conf={})))["size"] == "0 per server (off)"


# -- against a real server -----------------------------------------------------------------


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChidoriServer]:
    """A server of its own: a warm driver it starts must not serve other tests' jobs."""
    with ChidoriServer(tmp_path_factory.mktemp("warm-cli")) as running:
        yield running


def cli_json(server: ChidoriServer, capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    argv = ["admin", "warm-pool", *args, "--json", "--server", server.url, "--token", server.token]
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def local_pool(server: ChidoriServer, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    items: list[dict[str, Any]] = cli_json(server, capsys)["items"]
    return next(p for p in items if p["cluster"] == "local")


def wait_for_drivers(
    server: ChidoriServer, capsys: pytest.CaptureFixture[str], *, present: bool
) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        found = local_pool(server, capsys)
        if bool(found["drivers"]) == present or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_warm_pool_set_and_reset_on_a_real_server(
    live: ChidoriServer, capsys: pytest.CaptureFixture[str]
) -> None:
    before = local_pool(live, capsys)
    assert (before["size"], before["configured_size"], before["drivers"]) == (0, 0, [])

    answer = cli_json(live, capsys, "set", "local", "1")
    assert (answer["cluster"], answer["size"], answer["configured_size"]) == ("local", 1, 0)
    started = wait_for_drivers(live, capsys, present=True)
    assert started["size"] == 1
    (one,) = started["drivers"]
    assert one["state"] in {"starting", "idle"}  # a JVM takes seconds to be ready
    assert (one["memory"], one["cores"]) == (started["driver_memory"], started["driver_cores"])

    argv = ["admin", "warm-pool", "--server", live.url, "--token", live.token]
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert one["id"] in table
    assert "local" in table.splitlines()[1]

    reset = cli_json(live, capsys, "reset", "local")
    assert (reset["size"], reset["configured_size"]) == (0, 0)
    assert wait_for_drivers(live, capsys, present=False)["drivers"] == []
