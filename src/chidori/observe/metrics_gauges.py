"""Gauges read from the store at scrape time (jobs by state and cluster, queue depths, warm
drivers, live replicas), cached for a few seconds so scrapes stay cheap. A failed read never
fails the scrape: the store's gauges are left out, `chidori_store_up` says 0 and
`chidori_metrics_store_errors_total` counts it."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from chidori.observe.metrics import Metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoreSnapshot:
    jobs: Mapping[tuple[str, str], int] = field(default_factory=dict)  # (state, cluster)
    queued: Mapping[str, int] = field(default_factory=dict)  # queue: QUEUED jobs
    warm_drivers: Mapping[tuple[str, str], int] = field(default_factory=dict)  # (cluster, state)
    live_replicas: int = 0


class StoreGauges(Collector):
    def __init__(
        self, read: Callable[[], StoreSnapshot], metrics: Metrics, max_age: float = 5.0
    ) -> None:
        self._read = read
        self._max_age = max_age
        self._lock = threading.Lock()
        self._snapshot: StoreSnapshot | None = None
        self._read_at = float("-inf")
        self._errors = 0  # exported by collect() itself, so a scrape shows its own failure
        metrics.registry.register(self)

    def describe(self) -> list[Metric]:
        return []  # nothing to read at registration

    def _current(self) -> StoreSnapshot | None:
        with self._lock:  # concurrent scrapes share one read
            if time.monotonic() - self._read_at < self._max_age:
                return self._snapshot
            try:
                self._snapshot = self._read()
            except Exception as exc:
                log.warning("metrics: reading the store failed: %s", exc)
                self._errors += 1
                self._snapshot = None
            self._read_at = time.monotonic()
            return self._snapshot

    def collect(self) -> Iterator[Metric]:
        snapshot = self._current()
        up = GaugeMetricFamily("chidori_store_up", "Whether the last read of the store worked.")
        up.add_metric([], 0 if snapshot is None else 1)
        yield up
        yield CounterMetricFamily(
            "chidori_metrics_store_errors",
            "Reads of the store for the metrics that failed (their gauges were left out).",
            value=self._errors,
        )
        if snapshot is None:
            return
        jobs = GaugeMetricFamily(
            "chidori_jobs", "Jobs in the store by state and cluster.", labels=["state", "cluster"]
        )
        for (state, cluster), count in sorted(snapshot.jobs.items()):
            jobs.add_metric([state, cluster], count)
        yield jobs
        depth = GaugeMetricFamily(
            "chidori_queue_depth", "Jobs waiting (QUEUED) per queue.", labels=["queue"]
        )
        for queue, count in sorted(snapshot.queued.items()):
            depth.add_metric([queue], count)
        yield depth
        warm = GaugeMetricFamily(
            "chidori_warm_drivers",
            "Warm drivers by cluster and state (starting, idle, retiring), all replicas.",
            labels=["cluster", "state"],
        )
        for (cluster, state), count in sorted(snapshot.warm_drivers.items()):
            warm.add_metric([cluster, state], count)
        yield warm
        replicas = GaugeMetricFamily(
            "chidori_replicas_live", "Replicas whose heartbeat is recent (not stopped)."
        )
        replicas.add_metric([], snapshot.live_replicas)
        yield replicas
