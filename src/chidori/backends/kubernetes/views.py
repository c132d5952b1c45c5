"""Kubernetes objects (JSON dicts, as the API sends them) read into what Chidori shows and
admits on: `NodeView`s with their free capacity, and executor pod summaries."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from chidori.config.kubernetes_objects import parse_quantity
from chidori.domain.nodes import PRESSURES, NodeView, Taint


def quantity(text: str | int | float | None) -> float:
    """A Kubernetes quantity (`500m`, `2`, `1Gi`, `1500M`, `1e3`) as a number; 0 if absent."""
    if text is None or text == "":
        return 0.0
    return float(parse_quantity(text))


def _requests(pod: Mapping[str, Any]) -> tuple[int, int]:
    """(millicores, bytes) the pod requests: the sum over its containers, or its largest
    init container when that is more (how the scheduler counts)."""
    spec = pod.get("spec") or {}

    def total(containers: Iterable[Mapping[str, Any]]) -> tuple[float, float]:
        cpu = memory = 0.0
        for container in containers:
            requests = (container.get("resources") or {}).get("requests") or {}
            cpu += quantity(requests.get("cpu"))
            memory += quantity(requests.get("memory"))
        return cpu, memory

    cpu, memory = total(spec.get("containers") or [])
    for init in spec.get("initContainers") or []:
        init_cpu, init_memory = total([init])
        cpu, memory = max(cpu, init_cpu), max(memory, init_memory)
    return round(cpu * 1000), int(memory)


def node_views(
    nodes: Iterable[Mapping[str, Any]], pods: Iterable[Mapping[str, Any]]
) -> list[NodeView]:
    """Each node with what the bound, unfinished `pods` leave free of its allocatable."""
    used: dict[str, tuple[int, int]] = {}
    for pod in pods:
        node_name = (pod.get("spec") or {}).get("nodeName")
        phase = (pod.get("status") or {}).get("phase")
        if not node_name or phase in ("Succeeded", "Failed"):
            continue
        cpu, memory = _requests(pod)
        before = used.get(node_name, (0, 0))
        used[node_name] = (before[0] + cpu, before[1] + memory)
    views = []
    for node in nodes:
        meta = node.get("metadata") or {}
        spec = node.get("spec") or {}
        status = node.get("status") or {}
        conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
        allocatable = status.get("allocatable") or status.get("capacity") or {}
        cpu_used, memory_used = used.get(meta.get("name", ""), (0, 0))
        views.append(
            NodeView(
                name=str(meta.get("name", "")),
                ready=conditions.get("Ready") == "True",
                unschedulable=bool(spec.get("unschedulable")),
                pressures=tuple(p for p in PRESSURES if conditions.get(p) == "True"),
                taints=tuple(
                    Taint(
                        str(t.get("key", "")), str(t.get("value") or ""), str(t.get("effect", ""))
                    )
                    for t in spec.get("taints") or []
                ),
                labels=dict(meta.get("labels") or {}),
                free_millicores=round(quantity(allocatable.get("cpu")) * 1000) - cpu_used,
                free_memory_bytes=int(quantity(allocatable.get("memory"))) - memory_used,
            )
        )
    return views


def _since(timestamp: str | None, now: datetime) -> float | None:
    if not timestamp:
        return None
    try:
        then = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return max(0.0, (now - then).total_seconds())


def executor_summary(pod: Mapping[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """What the job page and API show of one executor pod: name, node, phase, restarts, the
    last reason (a container's waiting/terminated reason, or why it is not scheduled)."""
    now = now or datetime.now(UTC)
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    restarts = 0
    reason = None
    for container in status.get("containerStatuses") or []:
        restarts += int(container.get("restartCount") or 0)
        state = container.get("state") or {}
        for key in ("waiting", "terminated"):
            if state.get(key):
                detail = state[key]
                text = detail.get("reason") or key
                if detail.get("exitCode") is not None:
                    text += f" (exit code {detail['exitCode']})"
                if detail.get("message"):
                    text += f": {detail['message']}"
                reason = text
        last = (container.get("lastState") or {}).get("terminated")
        if last and reason is None:
            reason = f"restarted after {last.get('reason') or 'exit'}"
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            why = condition.get("reason") or "Unschedulable"
            reason = f"{why}: {condition['message']}" if condition.get("message") else why
    if status.get("reason") and status.get("phase") == "Failed":
        reason = f"{status['reason']}: {status.get('message') or ''}".rstrip(": ")  # Evicted
    labels = meta.get("labels") or {}
    return {
        "name": meta.get("name"),
        "executor_id": labels.get("spark-exec-id"),
        "node": spec.get("nodeName"),
        "phase": status.get("phase") or "Pending",
        "restarts": restarts,
        "reason": reason,
        "created_at": meta.get("creationTimestamp"),
        "age_seconds": _since(meta.get("creationTimestamp"), now),
        "deleting": bool(meta.get("deletionTimestamp")),
        "deleted": False,
    }
