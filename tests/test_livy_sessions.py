"""Livy interactive sessions through real Livy clients (pylivy; sparkmagic's Livy client code)
against one real server running real PySpark session drivers; Livy's error shapes; and the
session driver's shell semantics without Spark.

One server for the module: each real session costs a Spark driver start (about 7-15 s here).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from livy import LivySession, SessionKind, SparkRuntimeError

from chidori.domain.spec import SESSION_APPLICATION, JobSpec
from chidori.host.session_relay import SessionRelay
from chidori.runtime.session_driver import Repl
from chidori.store import JobRepository, open_database
from chidori.store.sessions import SessionInfo, SessionStore
from tests.server import ChidoriServer


@pytest.fixture(scope="module")
def livy_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChidoriServer]:
    with ChidoriServer(tmp_path_factory.mktemp("livy-sessions")) as running:
        yield running


def _auth(server: ChidoriServer) -> tuple[str, str]:
    return ("livy-user", server.token)


def _wait_statement(server: ChidoriServer, session_id: int, number: int) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while True:
        statement: dict[str, Any] = httpx.get(
            f"{server.url}/sessions/{session_id}/statements/{number}", auth=_auth(server)
        ).json()
        if statement["state"] not in ("waiting", "running", "cancelling"):
            return statement
        assert time.monotonic() < deadline, statement
        time.sleep(0.2)


# ---- pylivy ---------------------------------------------------------------------------------


@pytest.mark.spark
def test_pylivy_runs_python_statements_in_one_session(livy_server: ChidoriServer) -> None:
    session = LivySession.create(
        livy_server.url, kind=SessionKind.PYSPARK, auth=_auth(livy_server), name="repl",
        echo=False,
    )  # fmt: skip
    with session:
        assert session.state.value == "idle"
        assert session.run("print(1+1)").text == "2"
        # The namespace persists; a final expression shows its value, as in a shell.
        session.run("df = spark.range(100)")
        assert session.run("df.count()").text == "100"
        assert session.run("x = 41\nx + 1").text == "42"
        frame = session.download("df")
        # (Spark 4's toJSON names the column "value" rather than "id": not ours to judge.)
        assert len(frame) == 100 and sorted(frame.iloc[:, 0])[-1] == 99
        with pytest.raises(SparkRuntimeError) as failure:
            session.run("1 / 0")
        assert failure.value.ename == "ZeroDivisionError"
        assert failure.value.evalue == "division by zero"
        assert any("ZeroDivisionError" in line for line in failure.value.traceback)
        # A statement of another kind in the same session (Livy 0.5+).
        created = httpx.post(
            f"{livy_server.url}/sessions/{session.session_id}/statements",
            json={"code": "SELECT 1 AS one, 'a' AS letter", "kind": "sql"},
            auth=_auth(livy_server),
        )
        assert created.status_code == 201 and created.json()["state"] == "waiting"
        sql = _wait_statement(livy_server, session.session_id, created.json()["id"])
        assert sql["state"] == "available" and sql["progress"] == 1.0
        assert sql["output"]["data"]["application/json"]["data"] == [[1, "a"]]
        assert 0 < sql["started"] <= sql["completed"]
    job = livy_server.wait(session.session_id, timeout=60)
    assert job["state"] in ("CANCELLED", "SUCCEEDED")
    assert job["kind"] == "session" and job["labels"] == {"submitted-through": "livy"}
    log = httpx.get(
        f"{livy_server.url}/sessions/{session.session_id}/log",
        params={"from": 0, "size": 100_000},
        auth=_auth(livy_server),
    ).json()
    assert log["id"] == session.session_id and log["total"] == len(log["log"]) > 0
    assert any("Livy session ready" in line for line in log["log"])
    ended = httpx.get(f"{livy_server.url}/sessions/{session.session_id}", auth=_auth(livy_server))
    assert ended.json()["state"] in ("killed", "success")


@pytest.mark.spark
def test_a_sql_session_returns_livy_json_tables(livy_server: ChidoriServer) -> None:
    with LivySession.create(
        livy_server.url, kind=SessionKind.SQL, auth=_auth(livy_server), echo=False
    ) as session:
        frame = session.download_sql("SELECT id, id * 2 AS twice FROM range(3)")
        assert frame.to_dict("list") == {"id": [0, 1, 2], "twice": [0, 2, 4]}
        statement = session.client.create_statement(session.session_id, "SELECT 'x' AS s")
        raw = _wait_statement(livy_server, session.session_id, statement.statement_id)
        table = raw["output"]["data"]["application/json"]
        assert table["schema"]["type"] == "struct"
        assert [f["name"] for f in table["schema"]["fields"]] == ["s"]
        assert table["data"] == [["x"]]
        with pytest.raises(SparkRuntimeError) as failure:
            session.download_sql("SELECT * FROM no_such_table")
        assert failure.value.ename == "Error" and "no_such_table" in failure.value.evalue
        # Python in a SQL session: the statement's kind wins over the session's.
        python = httpx.post(
            f"{livy_server.url}/sessions/{session.session_id}/statements",
            json={"code": "spark.version[:1]", "kind": "pyspark"},
            auth=_auth(livy_server),
        ).json()
        done = _wait_statement(livy_server, session.session_id, python["id"])
        assert done["output"]["status"] == "ok" and done["output"]["data"]["text/plain"] != ""


# ---- sparkmagic -----------------------------------------------------------------------------


def _sparkmagic_client_module(conf_dir: Path) -> types.ModuleType:
    """sparkmagic's Livy HTTP client, imported without the rest of sparkmagic.

    The `sparkmagic` package pulls in Jupyter (its `__init__` loads the server extension) and
    requests-kerberos, whose gssapi needs the Kerberos development files to build. Only the
    client is wanted here: it is installed with `pip install --no-deps sparkmagic
    hdijupyterutils`, the package's `__init__` is bypassed, and requests_kerberos is stubbed
    (used only for a constant in its configuration defaults)."""
    found = importlib.util.find_spec("sparkmagic")
    if found is None or found.submodule_search_locations is None:
        why = "sparkmagic is not installed (pip install --no-deps sparkmagic hdijupyterutils)"
        if os.environ.get("CHIDORI_REQUIRE_SERVICES") == "1":
            pytest.fail(why + "; `make setup` installs it")
        pytest.skip(why)
    conf_dir.mkdir(parents=True, exist_ok=True)
    # Its logging config writes under SPARKMAGIC_CONF_DIR and would disable other loggers.
    quiet = {"version": 1, "disable_existing_loggers": False, "handlers": {}, "loggers": {}}
    (conf_dir / "config.json").write_text(json.dumps({"logging_config": quiet}))
    os.environ["SPARKMAGIC_CONF_DIR"] = str(conf_dir)
    if "sparkmagic" not in sys.modules:
        package = types.ModuleType("sparkmagic")
        package.__path__ = list(found.submodule_search_locations)
        sys.modules["sparkmagic"] = package
    if importlib.util.find_spec("requests_kerberos") is None:
        stub = types.ModuleType("requests_kerberos")
        stub.REQUIRED = 1  # type: ignore[attr-defined]
        sys.modules["requests_kerberos"] = stub
    return importlib.import_module("sparkmagic.livyclientlib.livyreliablehttpclient")


@pytest.mark.spark
def test_sparkmagic_client_runs_a_statement(livy_server: ChidoriServer, tmp_path: Path) -> None:
    from requests.auth import HTTPBasicAuth

    client_module = _sparkmagic_client_module(tmp_path / "sparkmagic")
    endpoint = importlib.import_module("sparkmagic.livyclientlib.endpoint")
    http = client_module.LivyReliableHttpClient.from_endpoint(
        endpoint.Endpoint(livy_server.url, HTTPBasicAuth("magic", livy_server.token))
    )
    created = http.post_session({"kind": "pyspark", "name": "magic"})
    session_id = created["id"]
    assert created["state"] in ("not_started", "starting") and created["kind"] == "pyspark"
    deadline = time.monotonic() + 120
    while http.get_session(session_id)["state"] != "idle":
        assert time.monotonic() < deadline
        time.sleep(0.5)
    # A session is a job like any other: running, counted by admission, in the jobs API.
    with livy_server.client() as api:
        job = api.get(f"/api/v1/jobs/{session_id}").json()
        running = api.get("/api/v1/jobs", params={"state": "RUNNING"}).json()
    assert job["state"] == "RUNNING" and job["kind"] == "session"
    assert session_id in [j["id"] for j in running["items"]]
    statement = http.post_statement(session_id, {"code": "sc.parallelize(range(10)).sum()"})
    while statement["state"] in ("waiting", "running"):
        time.sleep(0.2)
        statement = http.get_statement(session_id, statement["id"])
    assert statement["output"] == {
        "status": "ok", "execution_count": statement["id"], "data": {"text/plain": "45"}
    }  # fmt: skip
    listed = http.get_sessions()
    assert session_id in [s["id"] for s in listed["sessions"]]
    assert http.get_all_session_logs(session_id)["total"] > 0
    http.delete_session(session_id)
    assert livy_server.wait(session_id, timeout=60)["state"] == "CANCELLED"


# ---- errors, in Livy's shapes (no Spark needed) ---------------------------------------------


def test_livy_session_errors_use_livy_shapes(livy_server: ChidoriServer) -> None:
    url, auth = livy_server.url, _auth(livy_server)
    scala = httpx.post(f"{url}/sessions", json={"kind": "spark"}, auth=auth)
    assert scala.status_code == 400 and "'spark'" in scala.json()["msg"]
    sparkr = httpx.post(f"{url}/sessions", json={"kind": "sparkr"}, auth=auth)
    assert sparkr.status_code == 400 and "'sparkr'" in sparkr.json()["msg"]
    missing = httpx.get(f"{url}/sessions/987654", auth=auth)
    assert missing.status_code == 404 and missing.json() == {"msg": "Session '987654' not found."}
    for path in ("/state", "/log", "/statements", "/statements/0"):
        assert httpx.get(f"{url}/sessions/987654{path}", auth=auth).status_code == 404
    bad_json = httpx.post(
        f"{url}/sessions", content=b"{not json", auth=auth,
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    assert bad_json.status_code == 400 and "msg" in bad_json.json()
    assert httpx.get(f"{url}/sessions").status_code == 401
    anonymous = httpx.post(f"{url}/sessions", json={"kind": "pyspark"})
    assert anonymous.status_code == 401 and "msg" in anonymous.json()

    # A session stopped at once: it takes no statements, and bad statements are refused.
    created = httpx.post(f"{url}/sessions", json={"kind": "pyspark"}, auth=auth).json()
    session_id = created["id"]
    no_code = httpx.post(f"{url}/sessions/{session_id}/statements", json={}, auth=auth)
    assert no_code.status_code == 400 and "code" in no_code.json()["msg"]
    scala_code = httpx.post(
        f"{url}/sessions/{session_id}/statements", json={"code": "1", "kind": "spark"}, auth=auth
    )
    assert scala_code.status_code == 400 and "'spark'" in scala_code.json()["msg"]
    no_statement = httpx.get(f"{url}/sessions/{session_id}/statements/5", auth=auth)
    assert no_statement.status_code == 404 and "msg" in no_statement.json()
    assert httpx.delete(f"{url}/sessions/{session_id}", auth=auth).json() == {"msg": "deleted"}
    livy_server.wait(session_id, timeout=60)
    dead = httpx.post(f"{url}/sessions/{session_id}/statements", json={"code": "1"}, auth=auth)
    assert dead.status_code == 400 and "state" in dead.json()["msg"]
    state = httpx.get(f"{url}/sessions/{session_id}/state", auth=auth).json()
    assert state == {"id": session_id, "state": "killed"}
    # Sessions are not batches, and batches are not sessions.
    batches = httpx.get(f"{url}/batches", auth=auth).json()["sessions"]
    assert session_id not in [b["id"] for b in batches]


def test_a_statement_waits_until_cancelled_when_no_driver_has_it(
    livy_server: ChidoriServer,
) -> None:
    url, auth = livy_server.url, _auth(livy_server)
    with livy_server.client() as api:
        # Cancelled long before the driver is up (that takes seconds): no driver has it yet.
        created = httpx.post(f"{url}/sessions", json={"kind": "sql"}, auth=auth)
        assert created.status_code == 201, created.text
        session_id = created.json()["id"]
        statement = httpx.post(
            f"{url}/sessions/{session_id}/statements", json={"code": "SELECT 1"}, auth=auth
        ).json()
        assert statement == {
            "id": 0, "code": "SELECT 1", "state": "waiting", "output": None,
            "progress": 0.0, "started": 0, "completed": 0,
        }  # fmt: skip
        cancel = httpx.post(f"{url}/sessions/{session_id}/statements/0/cancel", auth=auth)
        assert cancel.json() == {"msg": "canceled"}
        listed = httpx.get(f"{url}/sessions/{session_id}/statements", auth=auth).json()
        assert listed["total_statements"] == 1
        assert listed["statements"][0]["state"] == "cancelled"
        api.post(f"/api/v1/jobs/{session_id}/cancel")


# ---- the session driver's shell, without Spark ----------------------------------------------


def test_the_session_shell_shows_the_last_expression_and_captures_output() -> None:
    repl = Repl(spark=None, sc=None, sql_context=None)
    assert repl.run_python(0, "x = 20\nprint('hello')\nx * 2") == {
        "status": "ok", "execution_count": 0, "data": {"text/plain": "hello\n40"},
    }  # fmt: skip
    assert repl.run_python(1, "x")["data"] == {"text/plain": "20"}
    assert repl.run_python(2, "y = 1")["data"] == {"text/plain": ""}
    failed = repl.run_python(3, "def f():\n    raise ValueError('bad')\nf()")
    assert failed["status"] == "error" and failed["execution_count"] == 3
    assert (failed["ename"], failed["evalue"]) == ("ValueError", "bad")
    assert failed["traceback"][0].startswith("Traceback")
    assert not any("session_driver" in line for line in failed["traceback"])
    syntax = repl.run_python(4, "def (:")
    assert syntax["status"] == "error" and syntax["ename"] == "SyntaxError"


# ---- the relay, with a driver played by the test (no Spark) ---------------------------------


def test_the_relay_hands_statements_over_and_fails_those_a_lost_driver_had(
    tmp_path: Path,
) -> None:
    store = open_database(f"sqlite:///{tmp_path / 'chidori.db'}")
    store.migrate()
    sessions = SessionStore(store)
    spec = JobSpec(kind="session", application=SESSION_APPLICATION)
    job, _ = JobRepository(store).create_job(spec, "someone")
    sessions.create(job.id, "pyspark", None)
    hosted: list[tuple[int, int]] = [(job.id, 1)]
    relay = SessionRelay(sessions, lambda: list(hosted), tmp_path / "work")
    first = sessions.add_statement(job.id, "1 + 1", "pyspark")
    second = sessions.add_statement(job.id, "2 + 2", "sql")
    control = tmp_path / "work" / str(job.id) / "attempt-1" / "control"

    relay.step()  # the driver is not ready: nothing handed over yet
    assert not (control / "in").exists()
    (control).mkdir(parents=True)
    (control / "ready").write_text("1")
    relay.step()
    assert sessions.get(job.id) == SessionInfo(job.id, "pyspark", None, 1)
    handed = json.loads((control / "in" / "0.json").read_text())
    assert handed == {"id": 0, "code": "1 + 1", "kind": "pyspark"}
    assert json.loads((control / "in" / "1.json").read_text())["kind"] == "sql"

    # The driver runs the first one, and starts the second.
    (control / "out").mkdir()
    output = {"status": "ok", "execution_count": 0, "data": {"text/plain": "2"}}
    result = {"id": 0, "state": "available", "started": 1000, "completed": 2000, "output": output}
    (control / "out" / "0.json").write_text(json.dumps(result))
    (control / "started").mkdir()
    (control / "started" / "1").write_text("3000")
    relay.step()
    done = sessions.get_statement(job.id, first.number)
    assert done.state == "available" and done.output == result["output"]
    assert done.started_at is not None and done.started_at.timestamp() == 1.0
    assert sessions.get_statement(job.id, second.number).state == "running"

    # A cancel for the running statement reaches the driver.
    assert sessions.cancel_statement(job.id, second.number).state == "cancelling"
    relay.step()
    assert (control / "cancel" / "1").exists()

    # The driver is lost; a third statement waits; the retry's driver comes up.
    third = sessions.add_statement(job.id, "3 + 3", "pyspark")
    hosted[:] = []
    relay.step()
    assert sessions.get_statement(job.id, second.number).state == "cancelled"
    hosted[:] = [(job.id, 2)]
    retry = tmp_path / "work" / str(job.id) / "attempt-2" / "control"
    retry.mkdir(parents=True)
    (retry / "ready").write_text("1")
    relay.step()
    assert json.loads((retry / "in" / f"{third.number}.json").read_text())["code"] == "3 + 3"
    assert sessions.get_statement(job.id, third.number).attempt == 2
    (retry / "started").mkdir()
    (retry / "started" / str(third.number)).write_text("5000")
    relay.step()
    # Lost again while running: that statement can never complete.
    hosted[:] = []
    relay.step()
    lost = sessions.get_statement(job.id, third.number)
    assert lost.state == "error" and lost.output is not None
    assert lost.output["ename"] == "SessionLost" and "attempt 2" in lost.output["evalue"]
    store.dispose()
