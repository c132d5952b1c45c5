"""Shared storage: what replicas on separate hosts cost.

1. Submissions with an upload each (a 4 KiB application of its own, then the job naming it),
   by 16 concurrent clients for `--seconds`, on PostgreSQL, with uploads kept on local disk
   (`CHIDORI_STORAGE_URL=local`), in the database (the default on PostgreSQL), and in S3 (a
   local moto server standing in for it). Reported as jobs/s and as a ratio to local disk.
2. A finished 10 MB driver log downloaded through the replica that hosted the driver (local
   file) and through one that did not (its copies in shared storage), each replica in a mount
   namespace of its own (needs root, as CI has), median of 5.

    .venv/bin/python bench/shared_storage.py [--seconds 10]

Not wrk (bench/acceptance.py): each job needs a multipart upload first, so the load comes from
an asyncio httpx client, the same for every setup.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.s3 import BUCKET, s3_server  # noqa: E402
from tests.server import ChidoriServer  # noqa: E402

from bench.common import print_table, write_results  # noqa: E402

POSTGRES = os.environ.get("CHIDORI_BENCH_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1/test")
BIG_LOG = "import sys\nline = 'x' * 99 + '\\n'\nsys.stdout.write(line * 100_000)\n"


def fresh_schema() -> str:
    from sqlalchemy import create_engine, text

    name = f"bench_storage_{os.getpid()}_{time.monotonic_ns()}"
    engine = create_engine(POSTGRES)
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{name}"'))
    engine.dispose()
    return f"{POSTGRES}?options=-csearch_path%3D{name}"


async def submit_with_uploads(server: ChidoriServer, seconds: float, clients: int) -> float:
    done = 0
    deadline = time.monotonic() + seconds

    async def client(number: int) -> None:
        nonlocal done
        headers = {"Authorization": f"Bearer {server.token}"}
        async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30) as http:
            count = 0
            while time.monotonic() < deadline:
                body = f"# {number}-{count}\n".encode() + b"x" * 4096
                stored = await http.post(
                    "/api/v1/uploads", files={"file": (f"app_{number}.py", body)}
                )
                stored.raise_for_status()
                job = await http.post(
                    "/api/v1/jobs", json={"kind": "python", "application": stored.json()["uri"]}
                )
                job.raise_for_status()
                count += 1
                done += 1

    started = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    return done / (time.perf_counter() - started)


def upload_rates(seconds: float, s3_env: dict[str, str], scratch: Path) -> list[list[Any]]:
    setups = [
        ("local disk", {"CHIDORI_STORAGE_URL": "local"}),
        ("database", {}),
        ("S3 (moto)", {**s3_env, "CHIDORI_STORAGE_URL": f"s3://{BUCKET}/rates"}),
    ]
    rows = []
    base = None
    for name, extra in setups:
        env = {
            "CHIDORI_DATABASE_URL": fresh_schema(),
            "CHIDORI_MAX_RUNNING_JOBS": "0",
            **extra,
        }
        config = scratch / "chidori.yaml"
        config.write_text("security:\n  submit_rate_per_second: 0\n")
        with ChidoriServer(scratch / name.replace(" ", "-"), env=env, config=config) as server:
            rate = asyncio.run(submit_with_uploads(server, seconds, 16))
        base = base or rate
        rows.append([name, f"{rate:.0f}", f"{rate / base:.2f}"])
    return rows


def log_reads(s3_env: dict[str, str], scratch: Path) -> list[list[Any]]:
    from tests.test_separate_hosts import separate_host

    env = {**s3_env, "CHIDORI_DATABASE_URL": fresh_schema(),
           "CHIDORI_STORAGE_URL": f"s3://{BUCKET}/logs"}  # fmt: skip
    a_dir, b_dir = scratch / "host-a", scratch / "host-b"
    a_dir.mkdir()
    b_dir.mkdir()
    a = ChidoriServer(a_dir / "home", env=env, wrapper=separate_host(b_dir))
    b = ChidoriServer(b_dir / "home", env={**env, "CHIDORI_MAX_RUNNING_JOBS": "0"},
                      wrapper=separate_host(a_dir))  # fmt: skip
    with a, b:
        with a.client() as client:
            app = client.post("/api/v1/uploads", files={"file": ("big.py", BIG_LOG.encode())})
        job = a.submit(kind="python", application=app.json()["uri"])
        a.wait(job["id"])
        times: dict[str, list[float]] = {"host": [], "other": []}
        size = 0
        for _ in range(5):
            for name, server in (("host", a), ("other", b)):
                with server.client() as client:
                    started = time.perf_counter()
                    body = client.get(f"/api/v1/jobs/{job['id']}/logs/download").content
                    times[name].append(time.perf_counter() - started)
                    size = len(body)
    host, other = statistics.median(times["host"]), statistics.median(times["other"])
    return [
        [f"{size / 1e6:.1f} MB log, through its host", f"{host * 1000:.0f}", "1.00"],
        ["same, through another replica", f"{other * 1000:.0f}", f"{other / host:.2f}"],
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    with s3_server() as s3_env, tempfile.TemporaryDirectory(prefix="chidori-bench-") as tmp:
        scratch = Path(tmp)
        scratch.chmod(0o755)
        rates = upload_rates(args.seconds, s3_env, scratch)
        print_table(["uploads (PostgreSQL)", "jobs/s", "ratio"], rates)
        reads: list[list[Any]] = []
        if os.geteuid() == 0:
            reads = log_reads(s3_env, scratch)
            print_table(["log download", "ms (median of 5)", "ratio"], reads)
        else:
            print("log reads through another replica: skipped (needs root for mount namespaces)")
    write_results("shared_storage", {"upload_rates": rates, "log_reads": reads})


if __name__ == "__main__":
    main()
