"""Durable job acceptance: jobs accepted per second through `POST /api/v1/jobs` by 32
concurrent connections (each job committed before its 201), and latency percentiles.

    .venv/bin/python bench/acceptance.py [--jobs 4000] [--connections 32] [--postgres URL]

Jobs are never run (the running-jobs limit is 0); they are only accepted and stored.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.server import ChidoriServer  # noqa: E402

from bench.common import percentile, print_table, write_results  # noqa: E402

SPEC = {"kind": "python", "application": "examples/train.py", "name": "bench"}


async def hammer(url: str, token: str, jobs: int, connections: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    counter = iter(range(jobs))
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {token}"}, limits=limits, timeout=60
    ) as client:

        async def worker() -> None:
            for _ in counter:
                started = time.perf_counter()
                response = await client.post("/api/v1/jobs", json=SPEC)
                latencies.append(time.perf_counter() - started)
                if response.status_code != 201:
                    raise RuntimeError(f"{response.status_code}: {response.text}")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - started
    return elapsed, latencies


def run(name: str, env: dict[str, str], jobs: int, connections: int) -> dict[str, Any]:
    config = Path(tempfile.mkdtemp()) / "bench.yaml"
    config.write_text("security:\n  submit_rate_per_second: 0\n")
    with (
        tempfile.TemporaryDirectory() as home,
        ChidoriServer(Path(home), env=env, config=config) as server,
    ):
        asyncio.run(hammer(server.url, server.token, 200, connections))  # warm-up
        elapsed, latencies = asyncio.run(hammer(server.url, server.token, jobs, connections))
    return {
        "setup": name,
        "jobs": jobs,
        "connections": connections,
        "jobs_per_second": jobs / elapsed,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=4000)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--postgres",
        default=os.environ.get(
            "CHIDORI_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument(
        "--rabbitmq",
        default=os.environ.get("CHIDORI_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/"),
    )
    args = parser.parse_args()
    held = {"CHIDORI_MAX_RUNNING_JOBS": "0"}
    rows = [run("SQLite + db queue", held, args.jobs, args.connections)]
    schema = f"bench_{secrets.token_hex(4)}"
    engine = create_engine(args.postgres.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        pg = f"{args.postgres}?options=-csearch_path%3D{schema}"
        rows.append(
            run(
                "PostgreSQL + db queue",
                held | {"CHIDORI_DATABASE_URL": pg},
                args.jobs,
                args.connections,
            )
        )
    finally:
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    print_table(
        ["setup", "jobs/s", "p50 ms", "p99 ms"],
        [
            [r["setup"], f"{r['jobs_per_second']:.0f}", f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}"]
            for r in rows
        ],
    )
    print("goal: >= 1000 jobs/s with p99 <= 150 ms")
    print(f"results: {write_results('acceptance', {'rows': rows})}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
