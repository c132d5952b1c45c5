"""A naive kube-scheduler for the fake cluster: binds pending pods to nodes that fit.

For each pod without `spec.nodeName` (not being deleted, `schedulerName` default-scheduler),
the nodes are filtered in the real scheduler's plugin order, each node failing on the first
filter that rejects it (resources report every insufficient resource, as NodeResourcesFit
does):

1. NodeUnschedulable: `spec.unschedulable` → "node(s) were unschedulable" (unless the pod
   tolerates `node.kubernetes.io/unschedulable:NoSchedule`);
2. TaintToleration: the node's NoSchedule/NoExecute taints, plus the ones the node lifecycle
   controller would add from its conditions (Ready False → `node.kubernetes.io/not-ready`,
   Ready Unknown → `node.kubernetes.io/unreachable`, MemoryPressure / DiskPressure /
   PIDPressure True → `node.kubernetes.io/memory-pressure` etc.), not tolerated by the pod →
   "node(s) had untolerated taint {key: value}";
3. NodeAffinity: `nodeSelector` and required node affinity terms → "node(s) didn't match
   Pod's node affinity/selector";
4. NodeResourcesFit: the pod's requests (sum of containers, max with each init container,
   plus overhead) against allocatable minus the requests of the node's pods that are not
   Succeeded/Failed → "Insufficient cpu", "Insufficient memory", "Too many pods", ...

A pod that fits nowhere gets condition PodScheduled=False, reason Unschedulable, and a Warning
event FailedScheduling with the real wording ("0/3 nodes are available: 1 node(s) had
untolerated taint {k: v}, 2 Insufficient memory. preemption: 0/3 nodes are available: ...";
preemption is never attempted: the suffix says "No preemption victims found for incoming pod"
for nodes short of resources and "Preemption is not helpful for scheduling" for the others).
Events are emitted when the message changes, not on every retry. Pods are retried whenever a
pod or node changes, and every `retry_interval` seconds. A pod that fits is bound (the binding
subresource's effect), gets PodScheduled=True and a Normal event Scheduled "Successfully
assigned NS/POD to NODE". Among fitting nodes the one with the largest free memory fraction
wins (ties by name).

Not modelled: scoring plugins, pod (anti-)affinity, topology spread, host ports, volume
binding, preferred affinity, preemption, priorities and queue order (pods are tried oldest
first), scheduling gates, multiple profiles.
"""

from __future__ import annotations

import threading
from collections import Counter
from fractions import Fraction
from typing import Any

from tests.kubesim import resources
from tests.kubesim.cluster import PRESSURES, Cluster
from tests.kubesim.errors import ApiError
from tests.kubesim.selectors import node_selector_terms_match

Obj = dict[str, Any]
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_BINARY = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_PRESSURE_TAINTS = {
    "MemoryPressure": "node.kubernetes.io/memory-pressure",
    "DiskPressure": "node.kubernetes.io/disk-pressure",
    "PIDPressure": "node.kubernetes.io/pid-pressure",
}


def _pow10(exponent: int) -> Fraction:
    return Fraction(10**exponent) if exponent >= 0 else Fraction(1, 10**-exponent)


def parse_quantity(text: str | int | float) -> Fraction:
    """A Kubernetes resource quantity ("500m", "1408Mi", "2Gi", "1.5", "1e3") as a number."""
    raw = str(text).strip()
    for suffix, power in _BINARY.items():
        if raw.endswith(suffix):
            return Fraction(raw[: -len(suffix)]) * Fraction(2**power)
    if raw and raw[-1] in _DECIMAL and not raw[-1].isdigit():
        return Fraction(raw[:-1]) * _pow10(_DECIMAL[raw[-1]])
    lowered = raw.lower()
    if "e" in lowered:
        mantissa, exponent = lowered.split("e", 1)
        return Fraction(mantissa) * _pow10(int(exponent))
    return Fraction(raw)


def pod_requests(pod: Obj) -> dict[str, Fraction]:
    """The pod's effective requests, as the scheduler computes them."""
    spec = pod.get("spec", {})
    total: dict[str, Fraction] = {}
    for c in spec.get("containers") or []:
        for name, q in ((c.get("resources") or {}).get("requests") or {}).items():
            total[name] = total.get(name, Fraction(0)) + parse_quantity(q)
    for c in spec.get("initContainers") or []:
        for name, q in ((c.get("resources") or {}).get("requests") or {}).items():
            total[name] = max(total.get(name, Fraction(0)), parse_quantity(q))
    for name, q in (spec.get("overhead") or {}).items():
        total[name] = total.get(name, Fraction(0)) + parse_quantity(q)
    total["pods"] = Fraction(1)
    return total


def tolerates(tolerations: list[Obj], taint: Obj) -> bool:
    """Whether any toleration tolerates the taint (the rules of `ToleratesTaint`)."""
    for t in tolerations:
        if t.get("effect") and t.get("effect") != taint.get("effect"):
            continue
        operator = t.get("operator") or "Equal"
        if not t.get("key"):
            if operator == "Exists":
                return True
            continue
        if t.get("key") != taint.get("key"):
            continue
        if operator == "Exists" or (t.get("value") or "") == (taint.get("value") or ""):
            return True
    return False


def effective_taints(node: Obj) -> list[Obj]:
    """The node's taints plus the ones its conditions imply."""
    taints = list(node.get("spec", {}).get("taints") or [])
    conditions = {
        c.get("type"): c.get("status") for c in node.get("status", {}).get("conditions", [])
    }
    ready = conditions.get("Ready", "Unknown")
    if ready != "True":
        key = (
            "node.kubernetes.io/not-ready" if ready == "False" else "node.kubernetes.io/unreachable"
        )
        taints.append({"key": key, "effect": "NoSchedule"})
    for kind in PRESSURES:
        if conditions.get(kind) == "True":
            taints.append({"key": _PRESSURE_TAINTS[kind], "effect": "NoSchedule"})
    return taints


class Scheduler:
    """Start with `start()` (a background thread) or call `schedule_once()` directly."""

    def __init__(
        self, cluster: Cluster, *, name: str = "default-scheduler", retry_interval: float = 1.0
    ) -> None:
        self.cluster = cluster
        self.name = name
        self.retry_interval = retry_interval
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._subs: list[Any] = []
        self._reported: dict[str, str] = {}

    def start(self) -> Scheduler:
        for kind in ("pods", "nodes"):
            self._subs.append(self.cluster.subscribe(kind, None, lambda _e: self._wake.set()))
        self._thread = threading.Thread(target=self._run, name="kubesim-scheduler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        for sub in self._subs:
            self.cluster.unsubscribe(sub)
        self._subs.clear()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self.retry_interval)
            self._wake.clear()
            if not self._stopping.is_set():
                self.schedule_once()

    # ---- one pass ----

    def schedule_once(self) -> None:
        """Try every pending pod once."""
        nodes = self.cluster.list("nodes")
        pods = self.cluster.list("pods")
        pending = [
            p
            for p in pods
            if not p["spec"].get("nodeName")
            and not p["metadata"].get("deletionTimestamp")
            and p["spec"].get("schedulerName", "default-scheduler") == self.name
            and p.get("status", {}).get("phase", "Pending") == "Pending"
        ]
        pending.sort(key=lambda p: int(p["metadata"]["resourceVersion"]))
        for pod in pending:
            chosen, message = self.place(pod, nodes, pods)
            if chosen is None:
                self._unschedulable(pod, message)
                continue
            try:
                self._bind(pod, chosen)
            except ApiError:
                continue  # deleted or bound meanwhile
            pod["spec"]["nodeName"] = chosen
            self._reported.pop(pod["metadata"]["uid"], None)

    def place(self, pod: Obj, nodes: list[Obj], pods: list[Obj]) -> tuple[str | None, str]:
        """The chosen node, or None and the FailedScheduling message."""
        if not nodes:
            return None, "no nodes available to schedule pods"
        reasons: Counter[str] = Counter()
        short_of_resources = 0
        fits: list[tuple[Fraction, str]] = []
        for node in nodes:
            failures = self.filter(pod, node, pods)
            if not failures:
                fits.append((-self._free_memory_fraction(node, pods), node["metadata"]["name"]))
                continue
            if failures[0].startswith("Insufficient") or failures[0] == "Too many pods":
                short_of_resources += 1
            reasons.update(failures)
        if fits:
            return min(fits)[1], ""
        total = len(nodes)
        listed = ", ".join(sorted(f"{count} {reason}" for reason, count in reasons.items()))
        preemption = []
        if total - short_of_resources:
            preemption.append(
                f"{total - short_of_resources} Preemption is not helpful for scheduling"
            )
        if short_of_resources:
            preemption.append(f"{short_of_resources} No preemption victims found for incoming pod")
        return None, (
            f"0/{total} nodes are available: {listed}. preemption: 0/{total} nodes are "
            f"available: {', '.join(sorted(preemption))}."
        )

    def filter(self, pod: Obj, node: Obj, pods: list[Obj]) -> list[str]:
        """Why the pod does not fit the node (empty: it fits)."""
        spec = pod.get("spec", {})
        tolerations = list(spec.get("tolerations") or [])
        unschedulable = {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}
        if node.get("spec", {}).get("unschedulable") and not tolerates(tolerations, unschedulable):
            return ["node(s) were unschedulable"]
        for taint in effective_taints(node):
            if taint.get("effect") in ("NoSchedule", "NoExecute") and not tolerates(
                tolerations, taint
            ):
                return [
                    f"node(s) had untolerated taint {{{taint['key']}: {taint.get('value', '')}}}"
                ]
        labels = node["metadata"].get("labels") or {}
        selector = spec.get("nodeSelector") or {}
        affinity = (spec.get("affinity") or {}).get("nodeAffinity") or {}
        required = affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {}
        terms = required.get("nodeSelectorTerms")
        if any(labels.get(k) != v for k, v in selector.items()) or (
            terms is not None and not node_selector_terms_match(terms, node)
        ):
            return ["node(s) didn't match Pod's node affinity/selector"]
        free = self._free(node, pods)
        failures = []
        for name, wanted in sorted(pod_requests(pod).items()):
            if wanted > free.get(name, Fraction(0)):
                failures.append("Too many pods" if name == "pods" else f"Insufficient {name}")
        return failures

    def _free(self, node: Obj, pods: list[Obj]) -> dict[str, Fraction]:
        name = node["metadata"]["name"]
        allocatable = node.get("status", {}).get("allocatable") or {}
        free = {k: parse_quantity(v) for k, v in allocatable.items()}
        for other in pods:
            if other["spec"].get("nodeName") != name:
                continue
            if other.get("status", {}).get("phase") in ("Succeeded", "Failed"):
                continue
            for k, v in pod_requests(other).items():
                free[k] = free.get(k, Fraction(0)) - v
        return free

    def _free_memory_fraction(self, node: Obj, pods: list[Obj]) -> Fraction:
        total = parse_quantity((node.get("status", {}).get("allocatable") or {}).get("memory", "0"))
        return self._free(node, pods).get("memory", Fraction(0)) / total if total else Fraction(0)

    # ---- writing the outcome ----

    def _bind(self, pod: Obj, node: str) -> None:
        meta = pod["metadata"]
        bound = self.cluster.bind_pod(meta["name"], node, meta["namespace"])
        self._set_condition(meta, "True", "", "")
        message = f"Successfully assigned {meta['namespace']}/{meta['name']} to {node}"
        self.cluster.add_event(bound, "Scheduled", message, component=self.name)

    def _unschedulable(self, pod: Obj, message: str) -> None:
        meta = pod["metadata"]
        if self._reported.get(meta["uid"]) == message:
            return
        self._reported[meta["uid"]] = message
        try:
            self._set_condition(meta, "False", "Unschedulable", message)
            self.cluster.add_event(
                pod, "FailedScheduling", message, type="Warning", component=self.name
            )
        except ApiError:
            pass  # deleted meanwhile

    def _set_condition(self, meta: Obj, status: str, reason: str, message: str) -> None:
        def change(pod: Obj) -> None:
            conditions = pod.setdefault("status", {}).setdefault("conditions", [])
            conditions[:] = [c for c in conditions if c.get("type") != "PodScheduled"]
            condition: Obj = {"type": "PodScheduled", "status": status}
            condition["lastProbeTime"] = None
            condition["lastTransitionTime"] = resources.timestamp()
            if reason:
                condition.update(reason=reason, message=message)
            conditions.append(condition)

        self.cluster.mutate("pods", meta["name"], change, meta["namespace"], "status")
