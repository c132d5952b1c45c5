"""The Spark Connect door against a direct connection to the same Connect server, side by side
in one run (one Chidori server, one user, one Connect server):

- connect plus the first `spark.range(10).count()` with a cold server (the door starts it);
- per-call overhead: `Config` (get one key) over raw gRPC, through the door and directly to
  the server's loopback port with its secret, in interleaved blocks; p50 and p99 of each and
  of the difference of the medians (goal: at most 1 ms p50, 5 ms p99);
- result throughput: `spark.range(N).toArrow()` through the door and directly, interleaved
  (goal: at least 85 % of direct).

- where the door's time goes, in this process before Spark starts: a `Config` call to a Python
  echo server directly, through a bare synchronous grpcio proxy (the floor of any such hop) and
  through the door itself (the real token check over a SQLite store, the session id read, the
  metadata swap; a fixed route in place of `ConnectServers`, whose cached route is a dict
  lookup), and the door's own work per call (`ConnectDoor._open`).

Warm Connect servers do not exist yet, so there is no warm figure.

    .venv/bin/python bench/connect.py [--calls 300] [--rows 2000000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import grpc  # noqa: E402
from tests.server import ChidoriServer, free_port  # noqa: E402

from bench.common import median, percentile, print_table, write_results  # noqa: E402
from chidori.config.connect import ConnectConfig  # noqa: E402
from chidori.connect.door import ConnectDoor  # noqa: E402
from chidori.connect.servers import Route  # noqa: E402
from chidori.connect.wire import SERVICE  # noqa: E402
from chidori.domain.identity import Principal, Role  # noqa: E402
from chidori.domain.policy import PolicyDoc  # noqa: E402
from chidori.services.identity import Actor, IdentityService  # noqa: E402
from chidori.store import open_database  # noqa: E402
from chidori.store.identity import IdentityStore  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from pyspark.sql import SparkSession
    from pyspark.sql.connect.proto import base_pb2, base_pb2_grpc


def config_calls(port: int, token: str, session_id: str, calls: int) -> list[float]:
    """Seconds per `Config` get call on one channel (after one call to warm it)."""
    metadata = [("authorization", f"Bearer {token}")]
    request = base_pb2.ConfigRequest(
        session_id=session_id,
        user_context=base_pb2.UserContext(user_id="bench"),
        operation=base_pb2.ConfigRequest.Operation(
            get=base_pb2.ConfigRequest.Get(keys=["spark.sql.shuffle.partitions"])
        ),
    )
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = base_pb2_grpc.SparkConnectServiceStub(channel)  # type: ignore[no-untyped-call]
        stub.Config(request, metadata=metadata)
        times = []
        for _ in range(calls):
            started = time.perf_counter()
            stub.Config(request, metadata=metadata)
            times.append(time.perf_counter() - started)
    return times


class _FixedRoute:
    """Stands in for ConnectServers: every call goes to one server."""

    def __init__(self, port: int) -> None:
        self._route = Route(1, 1, port, "backend-secret", time.monotonic())

    def route(self, _actor: Actor, _start: bool = True) -> Route:
        return self._route

    def forget(self, _actor: Actor, _route: Route) -> None:
        pass


@contextmanager
def _grpc_server(handler: Callable[[bytes, Any], bytes]) -> Iterator[int]:
    methods = {"Config": grpc.unary_unary_rpc_method_handler(handler)}
    server = grpc.server(
        ThreadPoolExecutor(max_workers=16),
        handlers=[grpc.method_handlers_generic_handler(SERVICE, methods)],
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield port
    finally:
        server.stop(0).wait()


def door_in_process(calls: int) -> dict[str, float]:
    """p50 ms of a Config call to an echo server directly, through a bare proxy and through
    the door, and of the door's own work per call (interleaved blocks)."""
    request = base_pb2.ConfigRequest(
        session_id="6f1c3a52-0d0e-4a8e-9d7e-3f0b6c1d2e4f",
        user_context=base_pb2.UserContext(user_id="bench"),
        operation=base_pb2.ConfigRequest.Operation(
            get=base_pb2.ConfigRequest.Get(keys=["spark.sql.shuffle.partitions"])
        ),
    ).SerializeToString()
    path = f"/{SERVICE}/Config"
    with tempfile.TemporaryDirectory() as home:
        store = open_database(f"sqlite:///{home}/chidori.db")
        store.migrate()
        identity = IdentityService(IdentityStore(store), "bench-bootstrap", PolicyDoc())
        identity.bootstrap()
        IdentityStore(store).ensure_user("bench", Role.USER)
        _, token = identity.create_token(
            Actor(Principal("bench", Role.USER), None), None, "bench", None
        )
        with _grpc_server(lambda message, _context: message) as echo:
            upstream = grpc.insecure_channel(f"127.0.0.1:{echo}")
            forward = upstream.unary_unary(path)

            def bare(message: bytes, context: Any) -> bytes:
                received = context.invocation_metadata()
                metadata = [(k, v) for k, v in received if k != "authorization"]
                answer: bytes = forward(message, metadata=metadata)
                return answer

            door = ConnectDoor(identity, _FixedRoute(echo), ConnectConfig(port=0))  # type: ignore[arg-type]
            own: list[float] = []
            opened = door._open

            def timed_open(*args: Any) -> Any:
                started = time.perf_counter()
                try:
                    return opened(*args)
                finally:
                    own.append(time.perf_counter() - started)

            door._open = timed_open  # type: ignore[method-assign,assignment]
            door_port = door.start()
            with _grpc_server(bare) as proxy:
                times: dict[str, list[float]] = {"direct": [], "bare": [], "door": []}
                ports = {"direct": echo, "bare": proxy, "door": door_port}
                for _ in range(10):  # interleaved blocks
                    for name, port in ports.items():
                        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                            call = channel.unary_unary(path)
                            metadata = [("authorization", f"Bearer {token}")]
                            call(request, metadata=metadata)
                            for _ in range(max(1, calls // 10)):
                                started = time.perf_counter()
                                call(request, metadata=metadata)
                                times[name].append(time.perf_counter() - started)
            door.stop(0)
            upstream.close()
        store.dispose()
    ms = 1000.0
    return {
        "echo_direct_p50": round(median(times["direct"]) * ms, 3),
        "bare_proxy_p50": round(median(times["bare"]) * ms, 3),
        "door_p50": round(median(times["door"]) * ms, 3),
        "door_own_work_p50": round(median(own) * ms, 3),
        "door_own_work_p99": round(percentile(own, 0.99) * ms, 3),
    }


def arrow_seconds(spark: Any, rows: int) -> tuple[float, int]:
    started = time.perf_counter()
    table = spark.range(rows).selectExpr("id", "id * 2 AS twice").toArrow()
    return time.perf_counter() - started, int(table.nbytes)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    in_process = door_in_process(max(options.calls, 1000))
    door_port = free_port()
    with tempfile.TemporaryDirectory() as home:
        env = {"CHIDORI_CONNECT_PORT": str(door_port), "CHIDORI_CONNECT_HOLD": "300"}
        with ChidoriServer(Path(home), env=env) as server:
            started = time.perf_counter()
            via_door = SparkSession.builder.remote(
                f"sc://localhost:{door_port}/;token={server.token}"
            ).create()
            assert via_door.range(10).count() == 10
            cold_first = time.perf_counter() - started
            with server.client() as client:
                job = client.get("/api/v1/jobs").json()["items"][0]
            control = Path(home) / "work" / str(job["id"]) / "attempt-1" / "control"
            endpoint = json.loads((control / "endpoint").read_text())
            direct_port, secret = int(endpoint["port"]), str(endpoint["token"])
            direct = SparkSession.builder.remote(
                f"sc://localhost:{direct_port}/;token={secret}"
            ).create()
            session_id = via_door.client._session_id
            door_calls: list[float] = []
            direct_calls: list[float] = []
            block = max(1, options.calls // 10)
            for _ in range(10):  # interleaved blocks
                door_calls += config_calls(door_port, server.token, session_id, block)
                direct_calls += config_calls(direct_port, secret, session_id, block)
            door_rates: list[float] = []
            direct_rates: list[float] = []
            arrow_seconds(via_door, options.rows)  # both warmed before measuring
            arrow_seconds(direct, options.rows)
            for round_ in range(options.rounds):
                pair = [(via_door, door_rates), (direct, direct_rates)]
                for spark, rates in pair if round_ % 2 == 0 else reversed(pair):
                    seconds, size = arrow_seconds(spark, options.rows)
                    rates.append(size / seconds / 1e6)
            via_door.stop()
            direct.stop()
    ms = 1000.0
    results = {
        "cold_connect_and_first_count_s": round(cold_first, 2),
        "config_call_ms": {
            "door_p50": round(median(door_calls) * ms, 3),
            "door_p99": round(percentile(door_calls, 0.99) * ms, 3),
            "direct_p50": round(median(direct_calls) * ms, 3),
            "direct_p99": round(percentile(direct_calls, 0.99) * ms, 3),
            "overhead_p50": round((median(door_calls) - median(direct_calls)) * ms, 3),
            "overhead_p99": round(
                (percentile(door_calls, 0.99) - percentile(direct_calls, 0.99)) * ms, 3
            ),
        },
        "arrow_mb_per_s": {
            "door": round(median(door_rates), 1),
            "direct": round(median(direct_rates), 1),
            "door_share_of_direct": round(median(door_rates) / median(direct_rates), 3),
        },
        "in_process_ms": in_process,
        "calls": len(door_calls),
        "rows": options.rows,
        "rounds": options.rounds,
    }
    calls_ms = results["config_call_ms"]
    rates = results["arrow_mb_per_s"]
    assert isinstance(calls_ms, dict) and isinstance(rates, dict)
    print_table(
        ["figure", "door", "direct", "door - direct (or share)"],
        [
            ["Config call p50 (ms)", calls_ms["door_p50"], calls_ms["direct_p50"],
             calls_ms["overhead_p50"]],
            ["Config call p99 (ms)", calls_ms["door_p99"], calls_ms["direct_p99"],
             calls_ms["overhead_p99"]],
            ["toArrow (MB/s)", rates["door"], rates["direct"], rates["door_share_of_direct"]],
            ["cold connect + first count (s)", results["cold_connect_and_first_count_s"], "", ""],
        ],
    )  # fmt: skip
    print_table(
        ["in this process, to a Python echo server (ms)", "p50"],
        [
            ["direct", in_process["echo_direct_p50"]],
            ["bare synchronous grpcio proxy", in_process["bare_proxy_p50"]],
            ["the door (real token check, fixed route)", in_process["door_p50"]],
            ["the door's own work per call (_open)", in_process["door_own_work_p50"]],
            ["  the same, p99", in_process["door_own_work_p99"]],
        ],
    )
    print(write_results("connect", results))


if __name__ == "__main__":
    main()
