"""A user's Connect server that fails is not replaced by every retry of the client (which goes
on for minutes): for a while the door answers FAILED_PRECONDITION with the failure instead.
No Spark starts here: the cluster names a Python that does not exist, so the driver exits as
soon as spark-submit tries to run it."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tests.server import ChidoriServer, free_port

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # pyspark warns about pandas 3 on import
    from pyspark.sql.connect.proto import base_pb2, base_pb2_grpc


@pytest.fixture(scope="module")
def door(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ChidoriServer, int]]:
    port = free_port()
    home: Path = tmp_path_factory.mktemp("connect-failures")
    config = home / "chidori.yaml"
    config.write_text(
        "clusters:\n"
        "  broken:\n"
        "    type: local\n"
        "    master: 'local[1]'\n"
        "    python: /nonexistent/bin/python3\n"
        "connect: {cluster: broken, hold: 10}\n"
    )
    env = {"CHIDORI_CONNECT_PORT": str(port), "CHIDORI_CONFIG": str(config)}
    with ChidoriServer(home, env=env, config=config) as server:
        yield server, port


def test_a_failed_server_is_reported_not_started_again_at_each_retry(
    door: tuple[ChidoriServer, int],
) -> None:
    server, port = door
    metadata = [("authorization", f"Bearer {server.token}")]
    codes = []
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = base_pb2_grpc.SparkConnectServiceStub(channel)  # type: ignore[no-untyped-call]
        request = base_pb2.ConfigRequest(
            session_id="0e2b7a3c-1f4d-4c5e-8a6b-9c0d1e2f3a4b",
            operation=base_pb2.ConfigRequest.Operation(
                get=base_pb2.ConfigRequest.Get(keys=["spark.app.name"])
            ),
        )
        for _ in range(3):
            with pytest.raises(grpc.RpcError) as refused:
                stub.Config(request, metadata=metadata, timeout=60)
            codes.append(refused.value.code())
    assert codes[-1] is grpc.StatusCode.FAILED_PRECONDITION, codes
    with server.client() as client:
        jobs = client.get("/api/v1/jobs", params={"label": "submitted-through:connect"}).json()
    assert [j["state"] for j in jobs["items"]] == ["FAILED"]
    job = jobs["items"][0]
    assert f"job {job['id']}) failed" in (refused.value.details() or "")
