"""What a replica keeps watching on its Kubernetes clusters, in one thread.

Every `interval` seconds, per cluster:
- the nodes and what bound pods request of them, as `NodeView`s for the admit step (the
  executors promised to this server's started jobs, not yet bound, are taken out);
- the executor pods of this server's attempts: their summary (name, node, phase, restarts,
  last reason) goes to the attempt in the store with an `executor` event per change, and an
  executor Pending longer than the cluster's `pending_timeout` fails its attempt with the
  reason it is pending, instead of hanging;
- attempts that ended here get their executor pods, ConfigMaps and PVCs deleted by label.
At start and every `sweep_interval`, objects of this installation whose attempt is not active
in the store (a server killed with -9, a cleanup that failed) are deleted.

API errors are logged and retried at the next pass: a cluster that cannot be read keeps its
last node views for `stale_after` seconds, then admits nothing (its jobs wait, with a reason).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from chidori.backends.kubernetes.backend import KubernetesBackend
from chidori.backends.kubernetes.pod_template import ATTEMPT_LABEL, JOB_LABEL
from chidori.backends.kubernetes.views import executor_summary
from chidori.domain.errors import ChidoriError
from chidori.domain.nodes import ExecutorGang, NodeView, place
from chidori.domain.spec import JobSpec
from chidori.domain.states import AttemptState
from chidori.store import AttemptRepository, JobRepository

log = logging.getLogger(__name__)
Key = tuple[int, int]  # (job id, attempt)


@dataclass
class _Cluster:
    backend: KubernetesBackend
    views: list[NodeView] | None = None
    read_at: float = 0.0
    error: str | None = None
    seen: dict[Key, list[dict[str, Any]]] = field(default_factory=dict)  # last recorded
    gangs: dict[Key, ExecutorGang] = field(default_factory=dict)
    elsewhere: set[Key] = field(default_factory=set)  # running here, on another cluster


class KubernetesWatch:
    def __init__(
        self,
        backends: Mapping[str, KubernetesBackend],
        jobs: JobRepository,
        attempts: AttemptRepository,
        running: Callable[[], list[Key]],
        stop_attempt: Callable[[int, int, AttemptState, str], bool],
        server_id: str,
        interval: float = 2.0,
        sweep_interval: float = 60.0,
        stale_after: float = 30.0,
    ) -> None:
        self._clusters = {name: _Cluster(backend) for name, backend in backends.items()}
        self._jobs = jobs
        self._attempts = attempts
        self._running = running
        self._stop_attempt = stop_attempt
        self._server_id = server_id
        self._interval = interval
        self._sweep_interval = sweep_interval
        self._stale_after = stale_after
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_sweep = 0.0
        self._lock = threading.Lock()

    @property
    def clusters(self) -> list[str]:
        return list(self._clusters)

    def start(self) -> None:
        if not self._clusters:
            return
        self._thread = threading.Thread(target=self._run, name="kubernetes-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    # ---- NodeSource (read by the admit step) -------------------------------------------------

    def node_views(self) -> Mapping[str, Sequence[NodeView]]:
        now = time.monotonic()
        with self._lock:
            found: dict[str, Sequence[NodeView]] = {}
            for name, cluster in self._clusters.items():
                if cluster.views is None or now - cluster.read_at > self._stale_after:
                    found[name] = ()  # not seen (yet, or for too long): nothing fits
                else:
                    found[name] = cluster.views
            return found

    def gang_of(self, cluster: str, spec: JobSpec) -> ExecutorGang | None:
        entry = self._clusters.get(cluster)
        return entry.backend.gang_of(spec) if entry is not None else None

    # ---- the loop ----------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopped.is_set():
            started = time.monotonic()
            self.refresh()
            if started - self._last_sweep >= self._sweep_interval:
                self._last_sweep = started
                self.sweep()
            self._stopped.wait(max(0.05, self._interval - (time.monotonic() - started)))

    def refresh(self) -> None:
        """One pass over every cluster (also called by tests)."""
        running = set(self._running())
        for name, cluster in self._clusters.items():
            try:
                self._refresh(name, cluster, running)
            except ChidoriError as exc:
                if cluster.error != str(exc):
                    log.warning("cluster %r: %s", name, exc)
                cluster.error = str(exc)
            except Exception:
                log.exception("cluster %r: watching failed", name)

    def _refresh(self, name: str, cluster: _Cluster, running: set[Key]) -> None:
        backend = cluster.backend
        pods = backend.api.pods(backend.server_selector())
        by_attempt: dict[Key, list[dict[str, Any]]] = {}
        for pod in pods:
            labels = (pod.get("metadata") or {}).get("labels") or {}
            try:
                key = (int(labels[JOB_LABEL]), int(labels[ATTEMPT_LABEL]))
            except (KeyError, ValueError):
                continue
            by_attempt.setdefault(key, []).append(pod)
        mine = {key for key in running if self._on_cluster(key, name)}
        cluster.elsewhere &= running
        views = backend.node_views()
        # Executors promised to this server's jobs but not bound yet hold their room.
        for key in mine:
            gang = cluster.gangs.get(key)
            if gang is None:
                continue
            bound = sum(
                1 for pod in by_attempt.get(key, []) if (pod.get("spec") or {}).get("nodeName")
            )
            if gang.count > bound:
                views = list(place(replace(gang, count=gang.count - bound), views).nodes)
        with self._lock:
            cluster.views, cluster.read_at, cluster.error = views, time.monotonic(), None
        for key in mine:
            self._record(cluster, key, by_attempt.get(key, []))
        # Attempts that ended here: what they left goes now, not at the next sweep.
        for key in [k for k in cluster.seen if k not in mine]:
            del cluster.seen[key]
            cluster.gangs.pop(key, None)
            if by_attempt.get(key):
                backend.cleanup(*key)

    def _on_cluster(self, key: Key, name: str) -> bool:
        cluster = self._clusters[name]
        if key in cluster.seen:
            return True
        if key in cluster.elsewhere:
            return False
        try:
            spec = self._jobs.get_job(key[0]).spec
        except ChidoriError:
            return False
        if spec.cluster != name:
            cluster.elsewhere.add(key)
            return False
        cluster.seen[key] = []
        gang = cluster.backend.gang_of(spec)
        if gang is not None:
            cluster.gangs[key] = gang
        return True

    def _record(self, cluster: _Cluster, key: Key, pods: list[dict[str, Any]]) -> None:
        before = {s["name"]: s for s in cluster.seen.get(key, [])}
        current = {s["name"]: s for s in (executor_summary(p) for p in pods)}
        # A pod that is gone stays in the list as last seen, marked deleted: the attempt's
        # record keeps every executor it had (the driver deletes them as it ends).
        for name, last in before.items():
            if name not in current:
                current[name] = {**last, "deleting": False, "deleted": True}
        summaries = sorted(current.values(), key=lambda s: str(s["name"]))
        notes = []
        for summary in summaries:
            old = before.get(summary["name"])
            if old is None or (old["phase"], old["node"], old["reason"]) != (
                summary["phase"],
                summary["node"],
                summary["reason"],
            ):
                notes.append(_note(summary))
            elif summary.get("deleted") and not old.get("deleted"):
                notes.append(f"executor pod {summary['name']}: deleted")
        timeout = cluster.backend.settings.executor.pending_timeout_seconds
        for summary in summaries:
            if summary.get("deleted"):
                continue
            age = summary["age_seconds"] or 0.0
            if summary["phase"] == "Pending" and timeout and age > timeout:
                reason = f"executor pod {summary['name']} Pending for more than {timeout:g} s" + (
                    f": {summary['reason']}" if summary["reason"] else ""
                )
                if self._stop_attempt(key[0], key[1], AttemptState.FAILED, reason):
                    log.info("job %s attempt %s: %s", key[0], key[1], reason)
                break
        stable = [{k: v for k, v in s.items() if k != "age_seconds"} for s in summaries]
        if notes or stable != [
            {k: v for k, v in s.items() if k != "age_seconds"} for s in before.values()
        ]:
            try:
                self._attempts.record_executors(key[0], key[1], stable, notes, self._server_id)
            except ChidoriError as exc:
                log.warning("job %s: executor pods not recorded: %s", key[0], exc)
                return
        cluster.seen[key] = summaries

    def sweep(self) -> list[str]:
        """Delete objects of this installation whose attempt is active nowhere."""
        try:
            active = {(a.job_id, a.number) for a in self._attempts.active_attempts(None)}
        except ChidoriError as exc:
            log.warning("sweep skipped: %s", exc)
            return []
        deleted: list[str] = []
        for name, cluster in self._clusters.items():
            try:
                gone = cluster.backend.sweep(active)
            except ChidoriError as exc:
                log.warning("cluster %r: sweep failed: %s", name, exc)
                continue
            if gone:
                log.info("cluster %r: swept %s", name, ", ".join(gone))
            deleted += gone
        return deleted


def _note(summary: Mapping[str, Any]) -> str:
    text = f"executor pod {summary['name']}: {summary['phase']}"
    if summary["node"]:
        text += f" on node {summary['node']}"
    if summary["reason"]:
        text += f" ({summary['reason']})"
    return text
