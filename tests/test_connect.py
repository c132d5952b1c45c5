"""Spark Connect through Chidori's front door, with the stock client (pyspark's Connect client).

One server for the module, three plain users (alice, bob, carol), each reaching a Connect server of
their own, hosted as a `connect` job and sandboxed like any job. The tests run in order:
alice's queries (DataFrame, SQL, a Python UDF, an uploaded artifact, an interrupt), then bob's
server (isolated from alice's session even with its id, then cancelled), by which time alice's
server has been idle longer than its timeout and has ended. Last, with the running-jobs limit
set to the one server left (bob's), a third user (carol) waits until bob's is cancelled.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.server import ChidoriServer, free_port

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # pyspark warns about pandas 3 on import
    from pyspark.errors.exceptions.connect import (
        SparkConnectException,
        SparkConnectGrpcException,
    )
    from pyspark.sql import SparkSession
    from pyspark.sql.connect.client.retries import DefaultPolicy, extract_retry_delay

pytestmark = [
    pytest.mark.spark,
    pytest.mark.filterwarnings("ignore::FutureWarning"),  # pyspark about pandas 3
    pytest.mark.filterwarnings("ignore:Cannot infer the eval type"),  # typed UDFs
]

UNLIMITED: dict[str, Any] = {
    "max_running_jobs": None,
    "max_memory": None,
    "max_cores": None,
    "clusters": {},
}
IDLE_TIMEOUT = 30  # seconds: short here, so that alice's server ends during bob's tests


@dataclass
class World:
    server: ChidoriServer
    port: int
    tokens: dict[str, str]
    sessions: dict[str, Any]

    def url(self, user: str, **params: str) -> str:
        # "localhost" literally: the stock client sends a token over plain text only there.
        extra = "".join(f";{key}={value}" for key, value in params.items())
        return f"sc://localhost:{self.port}/;token={self.tokens[user]}{extra}"

    def session(self, user: str) -> Any:
        if user not in self.sessions:
            self.sessions[user] = SparkSession.builder.remote(self.url(user)).create()
        return self.sessions[user]

    def connect_job(self, user: str, only: bool = True) -> dict[str, Any]:
        """The user's Connect server job (the newest; `only`: there is no other)."""
        with self.server.client() as client:
            jobs = client.get(
                "/api/v1/jobs", params={"user": user, "label": "submitted-through:connect"}
            ).json()["items"]
        assert jobs and (len(jobs) == 1 or not only), jobs
        job: dict[str, Any] = jobs[0]
        return job


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    port = free_port()
    home: Path = tmp_path_factory.mktemp("connect")
    env = {
        "CHIDORI_CONNECT_PORT": str(port),
        "CHIDORI_CONNECT_IDLE_TIMEOUT": str(IDLE_TIMEOUT),
        "CHIDORI_CONNECT_DRIVER_MEMORY": "512m",
        # Held until ready, even on a busy machine: a client in a long back-off would leave a
        # ready server idle past its (short) timeout.
        "CHIDORI_CONNECT_HOLD": "120",
    }
    with ChidoriServer(home, env=env) as server:
        tokens = {}
        with server.client() as client:
            for user in ("alice", "bob", "carol"):
                made = client.post("/api/v1/admin/users", json={"name": user, "role": "user"})
                assert made.status_code == 201, made.text
                token = client.post("/api/v1/tokens", json={"user": user, "name": "connect"})
                tokens[user] = token.json()["token"]
        world = World(server, port, tokens, {})
        yield world
        for session in world.sessions.values():
            with contextlib.suppress(Exception):
                session.stop()


def test_a_dataframe_query_and_sql_on_the_users_own_server(world: World) -> None:
    spark = world.session("alice")
    assert spark.range(10).filter("id % 2 = 0").count() == 5
    rows = spark.sql("SELECT 6 * 7 AS answer, current_user() AS who").collect()
    assert rows[0]["answer"] == 42
    job = world.connect_job("alice")
    assert job["state"] == "RUNNING" and job["spec"]["kind"] == "connect"
    assert job["startup_seconds"] is not None  # its Spark application is up (ready_at)
    assert job["user"] == "alice"


def test_a_python_udf_runs_sandboxed_and_an_uploaded_artifact_is_importable(
    world: World, tmp_path: Path
) -> None:
    spark = world.session("alice")
    module = tmp_path / "chidori_connect_helper.py"
    module.write_text("def triple(x):\n    return 3 * x\n")
    spark.addArtifacts(str(module), pyfile=True)

    from pyspark.sql.functions import udf

    @udf("string")
    def where_it_runs(x: int) -> str:
        import os

        import chidori_connect_helper  # type: ignore[import-not-found]  # the uploaded artifact

        return f"{chidori_connect_helper.triple(x)}:{os.getuid()}"

    value, uid = spark.range(1, 2).select(where_it_runs("id")).first()[0].split(":")
    assert value == "3"
    # Hostile code from a plain user: the UDF runs in the job's sandbox, not as the server.
    assert int(uid) != os.getuid()


def test_interrupt_stops_a_long_query(world: World) -> None:
    spark = world.session("alice")
    failure: list[BaseException] = []

    from pyspark.sql.functions import udf

    @udf("long")
    def slow(x: int) -> int:
        import time

        time.sleep(120)
        return x

    def long_query() -> None:
        try:
            spark.range(1).select(slow("id")).collect()
        except BaseException as exc:
            failure.append(exc)

    runner = threading.Thread(target=long_query)
    started = time.monotonic()
    runner.start()
    time.sleep(3)
    interrupted = spark.interruptAll()
    runner.join(timeout=60)
    assert not runner.is_alive() and time.monotonic() - started < 60
    assert interrupted, "no operation was running to interrupt"
    assert failure and isinstance(failure[0], SparkConnectGrpcException)
    assert spark.range(3).count() == 3  # the session goes on


def test_a_second_user_gets_a_server_of_their_own_and_not_the_first_users_session(
    world: World,
) -> None:
    alice = world.session("alice")
    alice.range(5).createOrReplaceTempView("alice_secret")
    assert alice.sql("SELECT count(*) AS n FROM alice_secret").first()["n"] == 5
    session_id = alice.client._session_id
    # Bob presents alice's session id: he reaches his own server, where it names nothing.
    bob: Any = SparkSession.builder.remote(world.url("bob", session_id=session_id)).create()
    world.sessions["bob"] = bob
    assert bob.session_id == session_id
    assert bob.sql("SHOW VIEWS").filter("viewName = 'alice_secret'").count() == 0
    alice_job, bob_job = world.connect_job("alice"), world.connect_job("bob")
    assert bob_job["id"] != alice_job["id"] and bob_job["user"] == "bob"


def test_cancel_stops_the_users_server(world: World) -> None:
    bob = world.session("bob")
    assert bob.range(2).count() == 2
    job = world.connect_job("bob")
    with world.server.client() as client:
        assert client.delete(f"/api/v1/jobs/{job['id']}").status_code in (200, 202)
    ended = world.server.wait(job["id"], timeout=60)
    assert ended["state"] == "CANCELLED"
    assert "Spark Connect server asked to stop" in world.server.log(job["id"])
    # The server stopped listening: nothing answers on its port any more.
    control = world.server.home / "work" / str(job["id"]) / "attempt-1" / "control"
    endpoint = json.loads((control / "endpoint").read_text())
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", endpoint["port"]), timeout=5).close()


def test_a_killed_server_gives_a_retryable_error_and_a_new_session_works(world: World) -> None:
    bob = SparkSession.builder.remote(world.url("bob")).create()
    world.sessions["bob-2"] = bob
    assert bob.range(4).count() == 4
    job = world.connect_job("bob", only=False)
    assert job["state"] == "RUNNING"  # a new server: the cancelled one is not reused
    with world.server.client() as client:
        attempt = client.get(f"/api/v1/jobs/{job['id']}/attempts").json()["items"][-1]
    os.kill(attempt["pid"], signal.SIGKILL)
    ended = world.server.wait(job["id"], timeout=60)
    assert ended["state"] == "FAILED"
    # The old session lived in the killed server: the client says so (it ends the session).
    with pytest.raises(SparkConnectException):
        bob.range(5).count()
    fresh = SparkSession.builder.remote(world.url("bob")).create()
    world.sessions["bob-3"] = fresh
    assert fresh.range(6).count() == 6
    assert world.connect_job("bob", only=False)["id"] != job["id"]


def test_the_idle_timeout_ends_a_server(world: World) -> None:
    job = world.connect_job("alice")
    ended = world.server.wait(job["id"], timeout=IDLE_TIMEOUT + 60)
    assert ended["state"] == "SUCCEEDED"
    assert f"Spark Connect idle for {IDLE_TIMEOUT} s: stopping" in world.server.log(job["id"])


class RecordingPolicy(DefaultPolicy):
    """The stock client's own retry policy, with its back-off capped at the server's 2 s retry
    delay (so the test waits no longer than it must), recording what it was asked to retry."""

    def __init__(self) -> None:
        super().__init__(max_backoff=2000)
        self.retried: list[BaseException] = []

    def can_retry(self, exception: BaseException) -> bool:
        retry = super().can_retry(exception)
        if retry:
            self.retried.append(exception)
        return retry


def test_at_the_running_limit_a_third_users_first_call_waits_until_a_slot_frees(
    world: World,
) -> None:
    bob = world.sessions["bob-3"]
    assert bob.range(1).count() == 1  # bob's server is busy, not about to reach its idle timeout
    with world.server.client() as client:
        running = client.get("/api/v1/jobs", params={"state": "RUNNING"}).json()["items"]
        assert [job["user"] for job in running] == ["bob"]  # alice's ended at its idle timeout
        limited = client.put("/api/v1/admin/limits", json=UNLIMITED | {"max_running_jobs": 1})
        assert limited.status_code == 200, limited.text
    try:
        carol: Any = SparkSession.builder.remote(world.url("carol")).create()
        world.sessions["carol"] = carol
        policy = RecordingPolicy()
        carol.client.set_retry_policies([policy])
        answer: list[Any] = []
        query = threading.Thread(target=lambda: answer.append(carol.range(7).count()))
        query.start()
        deadline = time.monotonic() + 30
        while not policy.retried and time.monotonic() < deadline:
            time.sleep(0.2)
        # The client was told to wait: UNAVAILABLE with the door's 2 s retry delay.
        assert policy.retried, "the first call was not answered UNAVAILABLE"
        waited: Any = policy.retried[0]
        assert waited.code() is grpc.StatusCode.UNAVAILABLE
        assert extract_retry_delay(waited) == 2000
        assert "is queued" in waited.details()
        job = world.connect_job("carol")
        assert job["state"] == "QUEUED" and job["waiting_reason"] in waited.details()
        # A slot frees: bob's server is cancelled, carol's is admitted, her query goes through.
        bob_job = world.connect_job("bob", only=False)
        with world.server.client() as client:
            assert client.delete(f"/api/v1/jobs/{bob_job['id']}").status_code in (200, 202)
        query.join(timeout=120)
        assert answer == [7]
        assert world.connect_job("carol")["state"] == "RUNNING"
    finally:
        with world.server.client() as client:
            client.put("/api/v1/admin/limits", json=UNLIMITED)
