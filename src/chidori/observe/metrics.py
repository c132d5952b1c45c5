"""The server's Prometheus metrics: one `Metrics` object per server, with its own registry
(never the process-wide default), built in the composition root and handed to what observes.

Label values come from bounded sets only: cluster and queue names (configured), states,
start types, route templates, methods, status classes and reason classes. No job id, user
name, raw path or free-text reason is ever a label value.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

# Seconds. Queue waits span milliseconds (an idle server) to hours (a full cluster).
QUEUE_WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400)
# A warm hand-over takes milliseconds, a cold Spark driver tens of seconds.
STARTUP_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300)
DURATION_BUCKETS = (0.5, 1, 5, 10, 30, 60, 300, 600, 1800, 3600, 3 * 3600, 12 * 3600, 86400)
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Where a request matched no route (a 404, say): one label value, never the raw path.
UNMATCHED_ROUTE = "unmatched"

# "global ...", "cluster 'name' ..." or "queue 'name' ..." (names as repr() quotes them).
_LIMIT_REASON = re.compile(
    r"""^(global|cluster|queue)(?: '[^']*'| "[^"]*")? (running-jobs|memory|cores) limit"""
)
_RESOURCE = {"running-jobs": "jobs", "memory": "memory", "cores": "cores"}


def reason_class(reason: str) -> str:
    """The bounded class of an admission wait reason (which are free text), e.g.
    `queue_memory` for "queue 'etl' memory limit 8g: needs ...", `nodes` for node-aware
    refusals, `other` for anything else."""
    match = _LIMIT_REASON.match(reason)
    if match:
        return f"{match.group(1)}_{_RESOURCE[match.group(2)]}"
    if reason.startswith("no schedulable node"):
        return "nodes"
    return "other"


def status_class(status: int) -> str:
    """`2xx` for 201: the label keeps five values, not one per status code."""
    return f"{status // 100}xx" if 100 <= status < 600 else "other"


class Metrics:
    """Every metric the server exports, on one registry. Observations are a dictionary
    lookup and a lock: a few microseconds."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.queue_wait = Histogram(
            "chidori_queue_wait_seconds",
            "From submission to admission, per queue and cluster (a retry counts from submission).",
            ["queue", "cluster"],
            buckets=QUEUE_WAIT_BUCKETS,
            registry=r,
        )
        self.admission_decisions = Counter(
            "chidori_admission_decisions",
            "Admission decisions made by this replica: `admitted`, or the class of the reason "
            "a job waits (counted when a job's reason changes, not at every step).",
            ["decision"],
            registry=r,
        )
        self.driver_startup = Histogram(
            "chidori_driver_startup_seconds",
            "From admission until the job could run: the process started (python jobs), the "
            "warm driver took it, or the Spark application id appeared in the driver log.",
            ["cluster", "start"],
            buckets=STARTUP_BUCKETS,
            registry=r,
        )
        self.job_duration = Histogram(
            "chidori_job_duration_seconds",
            "How long an attempt's driver ran on this replica, by the state it ended in.",
            ["cluster", "state"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.http_duration = Histogram(
            "chidori_http_request_duration_seconds",
            "API latency by route template, method and status class.",
            ["route", "method", "status"],
            buckets=HTTP_BUCKETS,
            registry=r,
        )
        self.database_errors = Counter(
            "chidori_database_errors",
            "Database errors translated to StoreUnavailable, by operation (read or write).",
            ["operation"],
            registry=r,
        )
        self.queue_errors = Counter(
            "chidori_queue_errors",
            "Errors talking to the dispatch queue (broker), by queue kind.",
            ["kind"],
            registry=r,
        )
        self.attempts_lost = Counter(
            "chidori_attempts_lost",
            "Attempts this replica found LOST (an expired lease, or orphaned by an earlier run).",
            registry=r,
        )
        self.leases_held = Gauge(
            "chidori_leases_held",
            "Attempts whose lease this replica holds (drivers it runs).",
            registry=r,
        )
        self._http_children: dict[tuple[str, str, str], Histogram] = {}
        self._lock = threading.Lock()

    def watch_leases(self, held: Callable[[], int]) -> None:
        """Read the number of leases held at scrape time."""
        self.leases_held.set_function(held)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method if method in METHODS else "other", status_class(status))
        child = self._http_children.get(key)
        if child is None:
            with self._lock:
                child = self._http_children[key] = self.http_duration.labels(*key)
        child.observe(seconds)

    def count_decisions(self, admitted: int, reasons: Iterable[str]) -> None:
        if admitted:
            self.admission_decisions.labels("admitted").inc(admitted)
        for reason in reasons:
            self.admission_decisions.labels(reason_class(reason)).inc()

    def exposition(self) -> tuple[bytes, str]:
        """The text format and its content type, for `/metrics`."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
