"""Prometheus metrics: the pure parts, then `/metrics` on a live server after real jobs ran,
read with prometheus_client's own parser (counters and histograms move by what ran; no job id
anywhere in the exposition), and a scrape while the database is down."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from chidori.observe.metrics import Metrics, reason_class, status_class
from chidori.observe.metrics_gauges import StoreGauges, StoreSnapshot
from chidori.observe.metrics_jobs import AttemptTimings
from chidori.queues.dispatch import queue_kind
from tests.server import ChidoriServer

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


# ---- the pure parts ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("global running-jobs limit 4 reached", "global_jobs"),
        ("cluster 'local' memory limit 4g: needs 5g, 1g free", "cluster_memory"),
        ("queue 'etl' cores limit 8: needs 9, 0 free", "queue_cores"),
        ("queue 'my memory limit' running-jobs limit 1 reached", "queue_jobs"),
        (
            "no schedulable nodes with room for 3 executors of 2g/1: 2 nodes under DiskPressure",
            "nodes",
        ),
        ("something new", "other"),
    ],
)
def test_wait_reasons_fall_into_a_bounded_set_of_classes(reason: str, expected: str) -> None:
    assert reason_class(reason) == expected


def test_status_codes_become_classes() -> None:
    assert [status_class(s) for s in (200, 201, 304, 404, 503, 99, 700)] == [
        "2xx",
        "2xx",
        "3xx",
        "4xx",
        "5xx",
        "other",
        "other",
    ]


def test_queue_urls_become_kinds_without_their_secrets() -> None:
    assert queue_kind("db") == "db"
    assert queue_kind("") == "db"
    assert queue_kind("amqp://user:secret@host:5672/vh") == "rabbitmq"
    assert queue_kind("AMQPS://h") == "rabbitmq"
    assert queue_kind("pubsub://project/topic") == "pubsub"
    assert queue_kind("azure://ns/q") == "azure"
    assert queue_kind("kafka://x") == "other"


def test_each_metrics_object_has_its_own_registry() -> None:
    first, second = Metrics(), Metrics()
    first.observe_request("/healthz", "GET", 200, 0.01)
    first.observe_request("/healthz", "BREW", 200, 0.01)  # unknown methods share one label
    samples = parse(first.exposition()[0].decode())
    assert (
        value(
            samples,
            "chidori_http_request_duration_seconds_count",
            route="/healthz",
            method="GET",
            status="2xx",
        )
        == 1
    )
    assert (
        value(
            samples,
            "chidori_http_request_duration_seconds_count",
            route="/healthz",
            method="other",
            status="2xx",
        )
        == 1
    )
    assert b"/healthz" not in second.exposition()[0]


def test_attempt_timings_observe_wait_startup_and_duration_once() -> None:
    metrics = Metrics()
    timings = AttemptTimings(metrics)
    created = datetime.now(UTC) - timedelta(seconds=3)
    timings.admitted(7, 1, "etl", "local", created.replace(tzinfo=None))  # naive, as SQLite
    timings.started(7, 1, "cold", ready=False)
    timings.ready(7, 1)
    timings.ready(7, 1)  # a second sighting of the app id counts nothing
    timings.ended(7, 1, "SUCCEEDED")
    timings.ended(7, 1, "SUCCEEDED")  # nor does a second end
    timings.admitted(8, 1, "etl", "local", created)
    timings.ended(8, 1, "FAILED")  # never started: no duration
    timings.started(9, 1, "warm", ready=True)  # never admitted here: ignored
    samples = parse(metrics.exposition()[0].decode())
    waits = value(samples, "chidori_queue_wait_seconds_sum", queue="etl", cluster="local")
    assert value(samples, "chidori_queue_wait_seconds_count", queue="etl", cluster="local") == 2
    assert 6 <= waits < 10
    assert (
        value(samples, "chidori_driver_startup_seconds_count", cluster="local", start="cold") == 1
    )
    assert (
        value(samples, "chidori_driver_startup_seconds_count", cluster="local", start="warm") == 0
    )
    assert (
        value(samples, "chidori_job_duration_seconds_count", cluster="local", state="SUCCEEDED")
        == 1
    )
    assert (
        value(samples, "chidori_job_duration_seconds_count", cluster="local", state="FAILED") == 0
    )


def test_admission_decisions_count_reason_classes() -> None:
    metrics = Metrics()
    metrics.count_decisions(3, ["global running-jobs limit 2 reached", "queue 'a' memory limit 1g"])
    samples = parse(metrics.exposition()[0].decode())
    assert value(samples, "chidori_admission_decisions_total", decision="admitted") == 3
    assert value(samples, "chidori_admission_decisions_total", decision="global_jobs") == 1
    assert value(samples, "chidori_admission_decisions_total", decision="queue_memory") == 1


def test_store_gauges_are_cached_and_a_failed_read_does_not_fail_the_scrape() -> None:
    metrics = Metrics()
    reads: list[int] = []
    failing = False

    def read() -> StoreSnapshot:
        reads.append(1)
        if failing:
            raise RuntimeError("database down")
        return StoreSnapshot({("RUNNING", "local"): 2}, {"default": 5}, {("local", "idle"): 1}, 2)

    gauges = StoreGauges(read, metrics, max_age=0.2)
    samples = parse(metrics.exposition()[0].decode())
    parse(metrics.exposition()[0].decode())
    assert len(reads) == 1  # the second scrape used the cached read
    assert value(samples, "chidori_jobs", state="RUNNING", cluster="local") == 2
    assert value(samples, "chidori_queue_depth", queue="default") == 5
    assert value(samples, "chidori_warm_drivers", cluster="local", state="idle") == 1
    assert value(samples, "chidori_replicas_live") == 2
    assert value(samples, "chidori_store_up") == 1
    failing = True
    time.sleep(0.25)
    samples = parse(metrics.exposition()[0].decode())
    assert value(samples, "chidori_store_up") == 0
    assert value(samples, "chidori_metrics_store_errors_total") == 1
    assert ("chidori_jobs", frozenset({("state", "RUNNING"), ("cluster", "local")})) not in samples
    assert gauges is not None


# ---- a live server --------------------------------------------------------------------------

SLEEPER = "tests/jobs/sleeper.py"
CRASH = "tests/jobs/crash.py"


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChidoriServer]:
    home = tmp_path_factory.mktemp("metrics-server")
    with ChidoriServer(home, env={"CHIDORI_MAX_RUNNING_JOBS": "2"}) as running:
        yield running


def scrape(server: ChidoriServer) -> tuple[str, Samples]:
    response = httpx.get(f"{server.url}/metrics", timeout=10)  # no token: like /healthz
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return response.text, parse(response.text)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def assert_no_job_ids(text: str, job_ids: list[int]) -> None:
    """No label anywhere carries a job id (raw paths would: /api/v1/jobs/12)."""
    ids = {str(i) for i in job_ids}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            for name, label in sample.labels.items():
                if name in ("le", "quantile"):
                    continue
                assert label not in ids, (sample.name, name, label)
                assert not any(f"/{i}" in label for i in ids), (sample.name, name, label)


def jobs_by_state(server: ChidoriServer) -> dict[str, int]:
    counts: dict[str, int] = {}
    with server.client() as client:
        for job in client.get("/api/v1/jobs", params={"limit": 200}).json()["items"]:
            counts[job["state"]] = counts.get(job["state"], 0) + 1
    return counts


def wait_for_gauges(server: ChidoriServer, expected: dict[str, int]) -> Samples:
    """The store's gauges are cached for a few seconds: wait until they show `expected`."""
    deadline = time.monotonic() + 15
    while True:
        _text, samples = scrape(server)
        shown = {s: value(samples, "chidori_jobs", state=s, cluster="local") for s in expected}
        if shown == expected or time.monotonic() > deadline:
            assert shown == expected
            return samples
        time.sleep(0.5)


def test_counters_and_histograms_move_by_the_jobs_that_ran(observed: ChidoriServer) -> None:
    _text, before = scrape(observed)
    # Four jobs with room for two: two wait for the global running-jobs limit.
    jobs = [observed.submit(kind="python", application=SLEEPER, args=["1"]) for _ in range(3)]
    jobs.append(observed.submit(kind="python", application=CRASH))
    ids = [job["id"] for job in jobs]
    states = [observed.wait(i)["state"] for i in ids]
    assert states == ["SUCCEEDED", "SUCCEEDED", "SUCCEEDED", "FAILED"]
    with observed.client() as client:
        assert client.get(f"/api/v1/jobs/{ids[0]}").status_code == 200
        assert client.get("/api/v1/jobs/999999").status_code == 404
        assert client.get("/no/such/page/12345").status_code == 404
    text, after = scrape(observed)

    def moved(name: str, **labels: str) -> float:
        return delta(before, after, name, **labels)

    assert moved("chidori_job_duration_seconds_count", cluster="local", state="SUCCEEDED") == 3
    assert moved("chidori_job_duration_seconds_count", cluster="local", state="FAILED") == 1
    # Each sleeper ran at least its second.
    assert moved("chidori_job_duration_seconds_sum", cluster="local", state="SUCCEEDED") >= 3
    assert moved("chidori_queue_wait_seconds_count", queue="default", cluster="local") == 4
    # Python jobs are ready once their process runs: cold starts, one each.
    assert moved("chidori_driver_startup_seconds_count", cluster="local", start="cold") == 4
    assert moved("chidori_admission_decisions_total", decision="admitted") == 4
    assert moved("chidori_admission_decisions_total", decision="global_jobs") >= 1
    # API latency by route template and status class, never the raw path.
    http = "chidori_http_request_duration_seconds_count"
    assert moved(http, route="/api/v1/jobs", method="POST", status="2xx") == 4
    assert moved(http, route="/api/v1/jobs/{job_id}", method="GET", status="2xx") >= 5
    assert moved(http, route="/api/v1/jobs/{job_id}", method="GET", status="4xx") == 1
    assert moved(http, route="unmatched", method="GET", status="4xx") == 1
    assert "/no/such/page" not in text
    assert_no_job_ids(text, [*ids, 999999])
    assert value(after, "chidori_leases_held") == 0
    assert value(after, "chidori_store_up") == 1
    assert value(after, "chidori_replicas_live") == 1
    # The store's gauges agree with the jobs the API lists.
    counts = jobs_by_state(observed)
    samples = wait_for_gauges(observed, {s: counts.get(s, 0) for s in ("SUCCEEDED", "FAILED")})
    assert value(samples, "chidori_jobs", state="SUCCEEDED", cluster="local") >= 3


def test_a_running_job_holds_a_lease_and_queued_ones_show_in_the_queue_depth(
    observed: ChidoriServer,
) -> None:
    jobs = [observed.submit(kind="python", application=SLEEPER, args=["6"]) for _ in range(3)]
    deadline = time.monotonic() + 20
    while True:
        _text, samples = scrape(observed)
        seen = (
            value(samples, "chidori_leases_held"),
            value(samples, "chidori_queue_depth", queue="default"),
        )
        if seen == (2, 1) or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert seen == (2, 1)  # two run (the limit), one waits
    assert value(samples, "chidori_jobs", state="RUNNING", cluster="local") == 2
    with observed.client() as client:
        for job in jobs:
            client.post(f"/api/v1/jobs/{job['id']}/cancel")
    for job in jobs:
        observed.wait(job["id"])


@pytest.mark.spark
def test_a_spark_job_counts_its_cold_start_once_its_application_is_up(
    observed: ChidoriServer,
) -> None:
    _text, before = scrape(observed)
    job = observed.submit(application="examples/pi.py", args=["2"])
    assert observed.wait(job["id"])["state"] == "SUCCEEDED"
    text, after = scrape(observed)
    startup = "chidori_driver_startup_seconds"
    assert delta(before, after, f"{startup}_count", cluster="local", start="cold") == 1
    # A Spark driver takes more than a second to come up (a python process does not).
    assert delta(before, after, f"{startup}_sum", cluster="local", start="cold") > 1
    assert (
        delta(
            before, after, "chidori_job_duration_seconds_count", cluster="local", state="SUCCEEDED"
        )
        == 1
    )
    assert_no_job_ids(text, [job["id"]])


# ---- the database goes away ----------------------------------------------------------------


@pytest.fixture
def own_role_url(postgres_url: str) -> Iterator[tuple[str, Any]]:
    """A PostgreSQL login role with a schema of its own, and a switch that locks it out."""
    import secrets

    from sqlalchemy import create_engine, text

    role = f"chidori_obs_{secrets.token_hex(4)}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE ROLE "{role}" LOGIN'))
        conn.execute(text(f'CREATE SCHEMA "{role}" AUTHORIZATION "{role}"'))

    def lock_out(locked: bool) -> None:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER ROLE "{role}" {"NOLOGIN" if locked else "LOGIN"}'))
            if locked:
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = :r"
                    ),
                    {"r": role},
                )

    base = postgres_url.replace("postgres@", f"{role}@", 1)
    separator = "&" if "?" in base else "?"
    yield f"{base}{separator}options=-csearch_path%3D{role}", lock_out
    with admin.connect() as conn:
        conn.execute(
            text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'")
        )
        conn.execute(text(f'DROP SCHEMA "{role}" CASCADE'))
        conn.execute(text(f'DROP ROLE "{role}"'))
    admin.dispose()


@pytest.mark.postgres
def test_metrics_answer_while_the_database_is_down(
    own_role_url: tuple[str, Any], tmp_path: Path
) -> None:
    url, lock_out = own_role_url
    server = ChidoriServer(
        tmp_path / "home", env={"CHIDORI_DATABASE_URL": url, "CHIDORI_LOG_FORMAT": "json"}
    )
    with server:
        _text, before = scrape(server)
        assert value(before, "chidori_store_up") == 1
        lock_out(True)
        try:
            time.sleep(5.5)  # past the gauges' cache
            with server.client() as client:
                ready = client.get("/readyz", headers={"X-Request-ID": "outage-probe-1"})
            assert ready.status_code == 503
            assert ready.headers["x-request-id"] == "outage-probe-1"
            _text, during = scrape(server)
        finally:
            lock_out(False)
        assert value(during, "chidori_store_up") == 0
        assert delta(before, during, "chidori_metrics_store_errors_total") >= 1
        assert delta(before, during, "chidori_database_errors_total", operation="read") >= 2
        assert not any(name == "chidori_jobs" for name, _labels in during)
        readyz = "chidori_http_request_duration_seconds_count"
        assert value(during, readyz, route="/readyz", method="GET", status="5xx") == 1
        # Back: the next read after the cache works again.
        deadline = time.monotonic() + 20
        while value(scrape(server)[1], "chidori_store_up") != 1:
            assert time.monotonic() < deadline, "the gauges did not come back"
            time.sleep(0.5)
    # The request's log line carries the id the response echoed.
    import json

    lines = [json.loads(line) for line in server.log_path.read_text().splitlines() if line]
    probe = [line for line in lines if line.get("request_id") == "outage-probe-1"]
    assert probe and probe[-1]["level"] == "WARNING" and "503" in probe[-1]["message"]


# ---- the Grafana dashboard -------------------------------------------------------------------

DASHBOARD = Path(__file__).resolve().parent.parent / "deploy" / "grafana" / "chidori.json"


def exported_names() -> set[str]:
    """Every sample name the server's /metrics can carry: one Metrics object with the store's
    gauges, as the composition root builds it, each labelled metric observed once."""
    metrics = Metrics()
    StoreGauges(
        lambda: StoreSnapshot({("RUNNING", "local"): 1}, {"default": 1}, {("local", "idle"): 1}, 1),
        metrics,
    )
    metrics.observe_request("/healthz", "GET", 200, 0.01)
    metrics.count_decisions(1, [])
    timings = AttemptTimings(metrics)
    timings.admitted(1, 1, "default", "local", datetime.now(UTC))
    timings.started(1, 1, "cold", ready=True)
    timings.ended(1, 1, "SUCCEEDED")
    metrics.database_errors.labels("read").inc()
    metrics.queue_errors.labels("db").inc()
    text = metrics.exposition()[0].decode()
    return {
        sample.name for family in text_string_to_metric_families(text) for sample in family.samples
    }


def test_the_dashboard_queries_only_metrics_the_server_exports() -> None:
    import json
    import re

    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    expressions += [v["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    assert len(expressions) >= 12
    exported = exported_names()
    used: set[str] = set()
    for expr in expressions:
        without_strings = re.sub(r'"[^"]*"', '""', expr)
        without_ranges = re.sub(r"\[[^\]]*\]", "", without_strings)
        names = set(re.findall(r"\bchidori_[a-z_]+\b", without_ranges))
        assert names, f"no Chidori metric in {expr!r}"
        used |= names
    assert used <= exported, sorted(used - exported)
    # What the issue asks the dashboard to show is there.
    for needed in (
        "chidori_job_duration_seconds_count",
        "chidori_queue_depth",
        "chidori_queue_wait_seconds_bucket",
        "chidori_admission_decisions_total",
        "chidori_driver_startup_seconds_bucket",
        "chidori_job_duration_seconds_bucket",
        "chidori_http_request_duration_seconds_bucket",
        "chidori_database_errors_total",
        "chidori_queue_errors_total",
        "chidori_replicas_live",
        "chidori_leases_held",
    ):
        assert needed in used, needed
