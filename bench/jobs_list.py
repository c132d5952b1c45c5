"""The jobs list with a million jobs in the store: first pages of typical filters.

Bulk-inserts ROWS jobs (a realistic mix of states, datasets, users, queues and a year of
creation dates) straight into a migrated store with SQLAlchemy core, then times the first
page (50 jobs, newest first) of each filter through `chidori.store.job_list.list_jobs`, and through
`GET /api/v1/jobs` (in process, the full HTTP stack) on SQLite.

    python -m bench.jobs_list                    # SQLite and PostgreSQL, 1,000,000 rows
    python -m bench.jobs_list --rows 100000 --only sqlite

PostgreSQL: $CHIDORI_TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/test),
in a fresh schema that is dropped afterwards.
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, insert, text

from bench.common import percentile, print_table, write_results
from chidori.domain.records import JobQuery
from chidori.domain.spec import JobSpec
from chidori.domain.states import JobState
from chidori.store import Database, open_database
from chidori.store.database import normalize_url
from chidori.store.job_list import list_jobs
from chidori.store.models import JobRow

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
BATCH = 20_000
REPEATS = 40
SCHEMAS = [f"s{n:02d}" for n in range(40)]
TABLES = [f"t{n:02d}" for n in range(25)]
USERS = [f"user{n:03d}" for n in range(200)]
QUEUES = ["default", "etl", "ml", "adhoc", "backfill"]
CLUSTERS = ["local", "lab", "prod"]
STATES = [
    (JobState.SUCCEEDED, 0.85),
    (JobState.FAILED, 0.08),
    (JobState.CANCELLED, 0.03),
    (JobState.QUEUED, 0.025),
    (JobState.RUNNING, 0.01),
    (JobState.ADMITTED, 0.005),
]
NOW = datetime(2026, 6, 1, tzinfo=UTC)
SPAN = timedelta(days=365)


def _spec(schema: str, table: str, queue: str, cluster: str) -> dict[str, Any]:
    spec = JobSpec.model_validate(
        {
            "kind": "spark",
            "application": "examples/pi.py",
            "name": f"{schema}.{table} load",
            "schema": schema,
            "table": table,
            "queue": queue,
            "cluster": cluster,
            "conf": {"spark.sql.shuffle.partitions": "64"},
        }
    )
    return spec.stored_dict()


def rows(count: int, seed: int = 7) -> Iterator[list[dict[str, Any]]]:
    """Batches of job rows, oldest first (ids follow creation time, as in a real store)."""
    rng = random.Random(seed)
    states = [s for s, _ in STATES]
    weights = [w for _, w in STATES]
    # Some datasets are much busier than others.
    datasets = [(s, t) for s in SCHEMAS for t in TABLES]
    dataset_weights = [1.0 / (1 + i) ** 0.8 for i in range(len(datasets))]
    specs: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    batch: list[dict[str, Any]] = []
    step = SPAN / count
    start = NOW - SPAN
    for n in range(count):
        schema, table = rng.choices(datasets, dataset_weights)[0]
        queue, cluster = rng.choice(QUEUES), rng.choice(CLUSTERS)
        key = (schema, table, queue, cluster)
        spec = specs.get(key) or specs.setdefault(key, _spec(*key))
        state = rng.choices(states, weights)[0]
        created = start + step * n
        started = created + timedelta(seconds=rng.uniform(1, 120))
        finished = started + timedelta(seconds=rng.lognormvariate(5, 1))
        terminal = state.terminal
        ran = state not in (JobState.QUEUED, JobState.ADMITTED)
        user = rng.choice(USERS)
        batch.append(
            {
                "name": f"{schema}.{table} load {n % 997}",
                "state": state.value,
                "kind": "spark",
                "cluster": cluster,
                "queue": queue,
                "priority": 0,
                "schema_name": schema,
                "table_name": table,
                "owner": user,
                "team": f"team{int(user[4:]) % 20}",
                "spec": spec,
                "spec_hash": "0" * 64,
                "idempotency_key": None,
                "created_at": created,
                "updated_at": finished if terminal else created,
                "admitted_at": created if ran else None,
                "started_at": started if ran else None,
                "finished_at": finished if terminal and ran else None,
                "attempts": 1 if ran else 0,
                "failed_attempts": 1 if state is JobState.FAILED else 0,
                "lost_attempts": 0,
                "cancel_requested": state is JobState.CANCELLED,
                "demand_memory_mb": 2048,
                "demand_cores": 2,
            }
        )
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def fill(store: Database, url: str, count: int) -> float:
    started = time.perf_counter()
    engine = create_engine(url)
    with engine.begin() as conn:
        for batch in rows(count):
            conn.execute(insert(JobRow), batch)
    with engine.begin() as conn:
        conn.execute(text("ANALYZE"))
    engine.dispose()
    del store
    return time.perf_counter() - started


def queries() -> dict[str, JobQuery]:
    week = NOW - timedelta(days=180)
    return {
        "no filter": JobQuery(),
        "state=FAILED": JobQuery(states=(JobState.FAILED,)),
        "state=RUNNING (1%)": JobQuery(states=(JobState.RUNNING,)),
        "state=QUEUED+ADMITTED+RUNNING": JobQuery(
            states=(JobState.QUEUED, JobState.ADMITTED, JobState.RUNNING)
        ),
        "schema+table (busy)": JobQuery(schema_name="s00", table_name="t00"),
        "schema+table (rare)": JobQuery(schema_name="s39", table_name="t24"),
        "schema+table+FAILED": JobQuery(
            schema_name="s05", table_name="t03", states=(JobState.FAILED,)
        ),
        "created in one week": JobQuery(
            created_after=week, created_before=week + timedelta(days=7)
        ),
        "one week + FAILED": JobQuery(
            created_after=week,
            created_before=week + timedelta(days=7),
            states=(JobState.FAILED,),
        ),
        "user": JobQuery(owner="user042"),
        "queue=backfill": JobQuery(queue="backfill"),
        "text (common)": JobQuery(text="load 17"),
        "text (rare)": JobQuery(text="s39.t24 load 996"),
        "non-admin (own + team)": JobQuery(visible_to=("user042", "team2")),
        "page 100 (cursor)": JobQuery(before_id=995_000),
    }


def timed(call: Callable[[], object], repeats: int) -> tuple[float, float]:
    call()  # warm the caches
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return percentile(samples, 0.5), percentile(samples, 0.95)


def measure(store: Database, count: int, repeats: int) -> dict[str, dict[str, float]]:
    results = {}
    for name, query in queries().items():
        if query.before_id is not None:
            query = replace(query, before_id=max(51, count - 5_000))
        p50, p95 = timed(partial(list_jobs, store, query), repeats)
        results[name] = {"p50_ms": round(p50, 2), "p95_ms": round(p95, 2)}
    return results


def measure_http(database_url: str, repeats: int) -> dict[str, dict[str, float]]:
    """GET /api/v1/jobs in process (routing, auth, JSON), on the same store."""
    from fastapi.testclient import TestClient

    from chidori.config import load_settings
    from chidori.server import build_server

    home = Path(tempfile.mkdtemp(prefix="chidori-bench-"))
    env = {
        "CHIDORI_HOME": str(home),
        "CHIDORI_DATABASE_URL": database_url,
        "CHIDORI_ADMIN_TOKEN": "bench-token",
    }
    server = build_server(load_settings(env, None))
    client = TestClient(server.app, headers={"Authorization": "Bearer bench-token"})
    params: dict[str, dict[str, Any]] = {
        "no filter": {},
        "state=FAILED": {"state": "FAILED"},
        "schema+table (busy)": {"schema": "s00", "table": "t00"},
        "created in one week": {
            "created_after": (NOW - timedelta(days=180)).isoformat(),
            "created_before": (NOW - timedelta(days=173)).isoformat(),
        },
        "text (common)": {"q": "load 17"},
    }
    results = {}
    for name, query in params.items():

        def call(query: dict[str, Any] = query) -> None:
            response = client.get("/api/v1/jobs", params=query)
            assert response.status_code == 200, response.text
            assert len(response.json()["items"]) == 50

        p50, p95 = timed(call, repeats)
        results[name] = {"p50_ms": round(p50, 2), "p95_ms": round(p95, 2)}
    server.store.dispose()
    return results


def run_sqlite(count: int, repeats: int, http: bool) -> dict[str, Any]:
    directory = Path(tempfile.mkdtemp(prefix="chidori-bench-"))
    url = f"sqlite:///{directory / 'jobs.db'}"
    store = open_database(url)
    store.migrate()
    fill_seconds = fill(store, url, count)
    store = open_database(url)
    result: dict[str, Any] = {"fill_seconds": round(fill_seconds, 1)}
    result["store"] = measure(store, count, repeats)
    store.dispose()
    if http:
        result["http"] = measure_http(url, repeats)
    return result


def run_postgres(count: int, repeats: int) -> dict[str, Any]:
    base = normalize_url(os.environ.get("CHIDORI_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL))
    schema = f"chidori_bench_{secrets.token_hex(4)}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in base else "?"
    url = f"{base}{separator}options=-csearch_path%3D{schema}"
    try:
        store = open_database(url)
        store.migrate()
        fill_seconds = fill(store, url, count)
        store = open_database(url)
        result: dict[str, Any] = {"fill_seconds": round(fill_seconds, 1)}
        result["store"] = measure(store, count, repeats)
        store.dispose()
        return result
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=REPEATS)
    parser.add_argument("--only", choices=["sqlite", "postgres"])
    parser.add_argument("--no-http", action="store_true", help="skip GET /api/v1/jobs")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {"rows": args.rows, "page_size": 50, "repeats": args.repeats}
    if args.only in (None, "sqlite"):
        print(f"SQLite: inserting {args.rows:,} jobs ...", file=sys.stderr)
        results["sqlite"] = run_sqlite(args.rows, args.repeats, not args.no_http)
    if args.only in (None, "postgres"):
        print(f"PostgreSQL: inserting {args.rows:,} jobs ...", file=sys.stderr)
        results["postgres"] = run_postgres(args.rows, args.repeats)
    headers = ["filter (first page of 50)"]
    columns: list[tuple[str, str]] = []
    for backend in ("sqlite", "postgres"):
        if backend in results:
            headers += [f"{backend} p50 ms", f"{backend} p95 ms"]
            columns.append((backend, "store"))
    table = []
    for name in queries():
        row: list[object] = [name]
        for backend, part in columns:
            figures = results[backend][part][name]
            row += [figures["p50_ms"], figures["p95_ms"]]
        table.append(row)
    print_table(headers, table)
    if "http" in results.get("sqlite", {}):
        print()
        print_table(
            ["GET /api/v1/jobs on SQLite", "p50 ms", "p95 ms"],
            [[n, f["p50_ms"], f["p95_ms"]] for n, f in results["sqlite"]["http"].items()],
        )
    path = write_results("jobs_list", results)
    print(f"\nwritten to {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
