"""Durable job acceptance: jobs accepted per second through `POST /api/v1/jobs` by 32
concurrent connections (each job committed before its 201), with latency percentiles, for
SQLite + the db queue, PostgreSQL + the db queue and PostgreSQL + RabbitMQ.

    .venv/bin/python bench/acceptance.py [--seconds 10] [--connections 32]

The load comes from wrk (Debian's `wrk` package; a Python client cannot push this rate and
would measure itself). Jobs are never run (the running-jobs limit is 0); they are accepted,
stored and dispatched.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.server import ChidoriServer  # noqa: E402

from bench.common import print_table, write_results  # noqa: E402

WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = '{"kind": "python", "application": "examples/train.py", "name": "bench"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer TOKEN"
"""


def with_wrk(url: str, token: str, seconds: int, connections: int) -> dict[str, float]:
    script = Path(tempfile.mkdtemp()) / "post.lua"
    script.write_text(WRK_SCRIPT.replace("TOKEN", token))
    argv = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script)]
    out = subprocess.run(
        [*argv, f"{url}/api/v1/jobs"], capture_output=True, text=True, check=True
    ).stdout

    def ms(label: str) -> float:
        found = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        assert found, out
        number, unit = float(found.group(1)), found.group(2)
        return number / 1000 if unit == "us" else number * 1000 if unit == "s" else number

    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert rate and "Non-2xx" not in out, out
    return {"jobs_per_second": float(rate.group(1)), "p50_ms": ms("50%"), "p99_ms": ms("99%")}


def user_token(server: ChidoriServer) -> str:
    """A plain user's API token: submissions are checked as users' are, not as the bootstrap
    admin's (whose token is never looked up in the store)."""
    with server.client() as client:
        made = client.post("/api/v1/admin/users", json={"name": "bench", "role": "user"})
        assert made.status_code in (201, 409), made.text  # 409: a run before on this database
        token = client.post("/api/v1/tokens", json={"user": "bench", "name": "bench"})
        assert token.status_code == 201, token.text
        return str(token.json()["token"])


def run(name: str, env: dict[str, str], seconds: int, connections: int) -> dict[str, Any]:
    config = Path(tempfile.mkdtemp()) / "bench.yaml"
    config.write_text("security:\n  submit_rate_per_second: 0\n")
    with tempfile.TemporaryDirectory() as home:
        server = ChidoriServer(Path(home), env=env, config=config).start()
        try:
            token = user_token(server)
            with_wrk(server.url, token, 2, connections)  # warm-up
            figures = with_wrk(server.url, token, seconds, connections)
        finally:
            server.stop()
    return {"setup": name, "connections": connections, "seconds": seconds, **figures}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
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
    if not shutil.which("wrk"):
        print("this benchmark needs wrk: apt-get install wrk", file=sys.stderr)
        return 2
    held = {"CHIDORI_MAX_RUNNING_JOBS": "0"}
    rows = [run("SQLite + db queue", held, args.seconds, args.connections)]
    schema = f"bench_{secrets.token_hex(4)}"
    engine = create_engine(args.postgres.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        pg = {**held, "CHIDORI_DATABASE_URL": f"{args.postgres}?options=-csearch_path%3D{schema}"}
        rows.append(run("PostgreSQL + db queue", pg, args.seconds, args.connections))
        queue = f"{args.rabbitmq}?queue=chidori.bench.{secrets.token_hex(4)}"
        rows.append(
            run("PostgreSQL + RabbitMQ", {**pg, "CHIDORI_QUEUE_URL": queue}, args.seconds,
                args.connections)
        )  # fmt: skip
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
