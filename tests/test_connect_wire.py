"""The Connect door without Spark: the bytes it reads and writes (checked against the real
protobuf classes the stock client uses), its settings, its error table, and a live door that
refuses a bad or missing token with UNAUTHENTICATED before anything is routed."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2  # type: ignore[import-untyped]

from chidori.config import ConfigError, load_settings
from chidori.connect.errors import GRPC_STATUS, grpc_status_for
from chidori.connect.wire import METHODS, WireError, session_id_of, unavailable_status
from chidori.domain.errors import ChidoriError, Unavailable
from tests.server import ChidoriServer, free_port
from tests.test_error_tables import ERROR_CLASSES, SERVER_SIDE

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # pyspark warns about pandas 3 on import
    from pyspark.sql.connect.proto import base_pb2, base_pb2_grpc


def test_the_session_id_is_read_from_every_kind_of_request() -> None:
    context = base_pb2.UserContext(user_id="claimed-user", user_name="x" * 300)
    requests: list[Any] = [
        # Field 2 (the user context) before field 1 on the wire: the reader skips it.
        base_pb2.ExecutePlanRequest(user_context=context, session_id="s-1", operation_id="op"),
        base_pb2.ConfigRequest(session_id="s-2", user_context=context),
        base_pb2.AddArtifactsRequest(session_id="s-3", user_context=context),
        base_pb2.InterruptRequest(session_id="s-4", user_context=context),
        base_pb2.ReleaseSessionRequest(session_id="s-5"),
    ]
    assert [session_id_of(r.SerializeToString()) for r in requests] == [
        "s-1",
        "s-2",
        "s-3",
        "s-4",
        "s-5",
    ]
    assert session_id_of(base_pb2.ConfigRequest().SerializeToString()) is None


@pytest.mark.parametrize(
    "data",
    [b"\x0a\x05ab", b"\x0a", b"\x0b\x00", b"\x12\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"],
    ids=["field past the end", "no length", "wire type 3", "overlong varint"],
)
def test_bytes_that_are_no_request_are_refused(data: bytes) -> None:
    with pytest.raises(WireError):
        session_id_of(data)


def test_the_door_knows_every_rpc_of_the_service() -> None:
    servicer_methods = {
        name for name in vars(base_pb2_grpc.SparkConnectServiceServicer) if not name.startswith("_")
    }
    assert set(METHODS) == servicer_methods
    assert len(METHODS) == 12


def test_the_retry_status_decodes_as_google_rpc_status_with_retry_info() -> None:
    status = status_pb2.Status.FromString(unavailable_status("your server is starting", 2.5))
    assert status.code == grpc.StatusCode.UNAVAILABLE.value[0]
    assert status.message == "your server is starting"
    info = error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(info)
    assert info.retry_delay.ToMilliseconds() == 2500


@pytest.mark.parametrize("error", ERROR_CLASSES, ids=lambda cls: cls.__name__)
def test_every_error_class_has_a_grpc_status(error: type[ChidoriError]) -> None:
    entry = next(cls for cls in error.__mro__ if cls in GRPC_STATUS)
    assert entry is not ChidoriError, f"no deliberate gRPC status for {error.__name__}"
    code = GRPC_STATUS[entry]
    if issubclass(error, Unavailable):
        assert code is grpc.StatusCode.UNAVAILABLE  # what the client retries
    elif error.__name__ in SERVER_SIDE:
        assert code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.FAILED_PRECONDITION)
    assert grpc_status_for(Unavailable("x")) is grpc.StatusCode.UNAVAILABLE


def test_connect_settings() -> None:
    off = load_settings({}).connect
    assert not off.enabled and off.idle_timeout_seconds == 1800
    on = load_settings(
        {"CHIDORI_CONNECT_PORT": "15002", "CHIDORI_CONNECT_IDLE_TIMEOUT": "5m"}
    ).connect
    assert on.port == 15002 and on.idle_timeout_seconds == 300 and not on.tls
    with pytest.raises(ConfigError, match="needs TLS"):
        load_settings({"CHIDORI_CONNECT_PORT": "15002", "CHIDORI_CONNECT_HOST": "0.0.0.0"})
    with pytest.raises(ConfigError, match="go together"):
        load_settings({"CHIDORI_CONNECT_PORT": "15002", "CHIDORI_CONNECT_TLS_CERT": "c.pem"})
    with pytest.raises(ConfigError, match="port number"):
        load_settings({"CHIDORI_CONNECT_PORT": "http"})
    with pytest.raises(ConfigError, match="CHIDORI_CONNECT_IDLE_TIMEOUT"):
        load_settings({"CHIDORI_CONNECT_PORT": "15002", "CHIDORI_CONNECT_IDLE_TIMEOUT": "-1"})


@pytest.fixture(scope="module")
def door(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ChidoriServer, int]]:
    port = free_port()
    home: Path = tmp_path_factory.mktemp("connect-door")
    env = {
        "CHIDORI_CONNECT_PORT": str(port),
        # Admission paused: a Connect server stays queued, so no Spark starts in this module.
        "CHIDORI_MAX_RUNNING_JOBS": "0",
        "CHIDORI_CONNECT_HOLD": "1",
    }
    with ChidoriServer(home, env=env) as server:
        yield server, port


@pytest.mark.parametrize("token", [None, "chd_not-a-token", ""], ids=["missing", "bad", "empty"])
def test_a_bad_or_missing_token_is_refused_unauthenticated(
    door: tuple[ChidoriServer, int], token: str | None
) -> None:
    server, port = door
    metadata = [] if token is None else [("authorization", f"Bearer {token}")]
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = base_pb2_grpc.SparkConnectServiceStub(channel)  # type: ignore[no-untyped-call]
        request = base_pb2.ConfigRequest(session_id="00112233-4455-6677-8899-aabbccddeeff")
        with pytest.raises(grpc.RpcError) as refused:
            stub.Config(request, metadata=metadata, timeout=10)
    assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
    # Refused at the door: no Connect server was started for anyone.
    with server.client() as client:
        assert (
            client.get("/api/v1/jobs", params={"label": "submitted-through:connect"}).json()[
                "items"
            ]
            == []
        )


def test_a_request_without_a_session_id_is_refused(door: tuple[ChidoriServer, int]) -> None:
    server, port = door
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = base_pb2_grpc.SparkConnectServiceStub(channel)  # type: ignore[no-untyped-call]
        with pytest.raises(grpc.RpcError) as refused:
            stub.Config(
                base_pb2.ConfigRequest(),
                metadata=[("authorization", f"Bearer {server.token}")],
                timeout=10,
            )
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "session_id" in (refused.value.details() or "")


def test_a_queued_server_is_answered_unavailable_with_a_retry_delay_and_its_reason(
    door: tuple[ChidoriServer, int],
) -> None:
    server, port = door
    with server.client() as client:
        made = client.post("/api/v1/admin/users", json={"name": "queued-user", "role": "user"})
        assert made.status_code == 201, made.text
        token = client.post("/api/v1/tokens", json={"user": "queued-user"}).json()["token"]
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = base_pb2_grpc.SparkConnectServiceStub(channel)  # type: ignore[no-untyped-call]
        request = base_pb2.ConfigRequest(session_id="6f1c3a52-0d0e-4a8e-9d7e-3f0b6c1d2e4f")
        for _ in range(2):  # the second call finds the same queued server, starts no other
            with pytest.raises(grpc.RpcError) as waiting:
                stub.Config(request, metadata=[("authorization", f"Bearer {token}")], timeout=30)
            assert waiting.value.code() is grpc.StatusCode.UNAVAILABLE
    details = dict(waiting.value.trailing_metadata())["grpc-status-details-bin"]
    status = status_pb2.Status.FromString(details)
    info = error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(info) and info.retry_delay.ToMilliseconds() == 2000
    with server.client() as client:
        jobs = client.get("/api/v1/jobs", params={"user": "queued-user"}).json()["items"]
    assert [(j["state"], j["spec"]["kind"]) for j in jobs] == [("QUEUED", "connect")]
    # The client is told why it waits, in the job's own words.
    assert f"job {jobs[0]['id']}) is queued" in status.message
    assert jobs[0]["waiting_reason"] and jobs[0]["waiting_reason"] in status.message
    with server.client() as client:
        assert client.delete(f"/api/v1/jobs/{jobs[0]['id']}").status_code in (200, 202)
