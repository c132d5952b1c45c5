"""The Spark Connect door against a direct connection to the same Connect server, side by side
in one run (one Chidori server, one user, one Connect server):

- connect plus the first `spark.range(10).count()` with a cold server (the door starts it);
- per-call overhead: `Config` (get one key) over raw gRPC, through the door and directly to
  the server's loopback port with its secret, in interleaved blocks; p50 and p99 of each and
  of the difference of the medians (goal: at most 1 ms p50, 5 ms p99);
- result throughput: `spark.range(N).toArrow()` through the door and directly, interleaved
  (goal: at least 85 % of direct).

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
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import grpc  # noqa: E402
from tests.server import ChidoriServer, free_port  # noqa: E402

from bench.common import median, percentile, print_table, write_results  # noqa: E402

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
    print(write_results("connect", results))


if __name__ == "__main__":
    main()
