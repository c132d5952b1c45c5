"""The resource types the fake API server knows, their defaults, discovery and Table printing.

Only core/v1 is served (`/api/v1`); `/apis` lists no groups. For each resource: plural,
kind, scope, short names, verbs and subresources, as in the real `/api/v1` discovery document,
and the field selector labels the real server accepts for that kind.

Defaulting on create follows the API server's defaulting functions for the fields a client
usually reads back: pods (restartPolicy, dnsPolicy, schedulerName, terminationGracePeriodSeconds,
serviceAccountName, enableServiceLinks, priority, container imagePullPolicy /
terminationMessagePath / terminationMessagePolicy, requests copied from limits, status.phase
Pending, status.qosClass), services (clusterIP from 10.96.0.0/16, port protocol and
targetPort, sessionAffinity), secrets (type Opaque, stringData folded into data),
namespaces (spec.finalizers, status.phase, the kubernetes.io/metadata.name label), PVCs
(status.phase Pending), events (count, timestamps). Admission plugins that would also change a
pod (ServiceAccount's token volume, DefaultTolerationSeconds, LimitRanger, priority classes)
are not modelled.
"""

from __future__ import annotations

import base64
import datetime
import itertools
from dataclasses import dataclass, field
from typing import Any

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
COMMON_FIELDS = ("metadata.name", "metadata.namespace")
SERVER_VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0-kubesim",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.23.0",
    "compiler": "gc",
    "platform": "linux/amd64",
}


@dataclass(frozen=True)
class Resource:
    """One API resource type."""

    plural: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    subresources: dict[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict, hash=False)
    fields: tuple[str, ...] = ()
    group: str = ""
    version: str = "v1"

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def list_kind(self) -> str:
        return self.kind + "List"

    def field_labels(self) -> tuple[str, ...]:
        return COMMON_FIELDS + self.fields


_STATUS = ("Status", ("get", "patch", "update"))
RESOURCES: tuple[Resource, ...] = (
    Resource(
        "pods",
        "Pod",
        True,
        ("po",),
        subresources={
            "status": ("Pod", ("get", "patch", "update")),
            "log": ("Pod", ("get",)),
            "binding": ("Binding", ("create",)),
        },
        fields=(
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ),
    ),
    Resource("configmaps", "ConfigMap", True, ("cm",)),
    Resource("secrets", "Secret", True, fields=("type",)),
    Resource(
        "services", "Service", True, ("svc",), subresources={"status": ("Service", _STATUS[1])}
    ),
    Resource(
        "persistentvolumeclaims",
        "PersistentVolumeClaim",
        True,
        ("pvc",),
        subresources={"status": ("PersistentVolumeClaim", _STATUS[1])},
    ),
    Resource(
        "events",
        "Event",
        True,
        ("ev",),
        fields=(
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ),
    ),
    Resource(
        "serviceaccounts",
        "ServiceAccount",
        True,
        ("sa",),
        subresources={"token": ("TokenRequest", ("create",))},
    ),
    Resource(
        "nodes",
        "Node",
        False,
        ("no",),
        subresources={"status": ("Node", _STATUS[1])},
        fields=("spec.unschedulable",),
    ),
    Resource(
        "namespaces",
        "Namespace",
        False,
        ("ns",),
        verbs=("create", "delete", "get", "list", "patch", "update", "watch"),
        subresources={"status": ("Namespace", _STATUS[1])},
        fields=("status.phase",),
    ),
)


def find_resource(name: str) -> Resource | None:
    """A resource by plural, singular, kind or short name (case-insensitive for kinds)."""
    lowered = name.lower()
    for r in RESOURCES:
        if lowered in (r.plural, r.singular) or lowered in r.short_names:
            return r
    return None


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def timestamp(when: datetime.datetime | None = None) -> str:
    """RFC 3339 to the second, as metav1.Time is serialised."""
    return (when or now()).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_timestamp(when: datetime.datetime | None = None) -> str:
    """RFC 3339 with microseconds, as metav1.MicroTime is serialised."""
    return (when or now()).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_timestamp(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


# ---- discovery --------------------------------------------------------------------------------


def api_resource_list() -> dict[str, Any]:
    """`/api/v1`: an APIResourceList with resources and subresources."""
    entries: list[dict[str, Any]] = []
    for r in RESOURCES:
        entry: dict[str, Any] = {
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": list(r.verbs),
        }
        if r.short_names:
            entry["shortNames"] = list(r.short_names)
        entries.append(entry)
        for sub, (kind, verbs) in r.subresources.items():
            sub_entry = {
                "name": f"{r.plural}/{sub}",
                "singularName": "",
                "namespaced": r.namespaced,
            }
            sub_entry.update({"kind": kind, "verbs": list(verbs)})
            if kind == "TokenRequest":
                sub_entry.update({"group": "authentication.k8s.io", "version": "v1"})
            entries.append(sub_entry)
    return {"kind": "APIResourceList", "groupVersion": "v1", "resources": entries}


def api_versions(host: str) -> dict[str, Any]:
    """`/api`: the legacy group's versions."""
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": host}],
    }


def api_group_list() -> dict[str, Any]:
    """`/apis`: no named groups are served."""
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": []}


# ---- defaulting --------------------------------------------------------------------------------

_cluster_ips = itertools.count(10)


def _container_defaults(container: dict[str, Any]) -> None:
    image = str(container.get("image", ""))
    tag = image.rsplit("/", 1)[-1]
    latest = ":" not in tag or tag.endswith(":latest")
    container.setdefault(
        "imagePullPolicy", "Always" if latest and "@" not in tag else "IfNotPresent"
    )
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    resources = container.setdefault("resources", {})
    limits = resources.get("limits") or {}
    if limits:
        requests = resources.setdefault("requests", {})
        for name, quantity in limits.items():
            requests.setdefault(name, quantity)
    for port in container.get("ports") or []:
        port.setdefault("protocol", "TCP")


def qos_class(spec: dict[str, Any]) -> str:
    """BestEffort / Guaranteed / Burstable, from the containers' requests and limits."""
    containers = list(spec.get("containers") or []) + list(spec.get("initContainers") or [])
    requests = [c.get("resources", {}).get("requests") or {} for c in containers]
    limits = [c.get("resources", {}).get("limits") or {} for c in containers]
    if not any(requests) and not any(limits):
        return "BestEffort"
    guaranteed = all(
        lim.get("cpu")
        and lim.get("memory")
        and req.get("cpu", lim["cpu"]) == lim["cpu"]
        and req.get("memory", lim["memory"]) == lim["memory"]
        for req, lim in zip(requests, limits, strict=True)
    )
    return "Guaranteed" if guaranteed else "Burstable"


def apply_defaults(resource: Resource, obj: dict[str, Any]) -> None:
    """Fill in what the API server's defaulting would, on create."""
    kind = resource.kind
    if kind == "Pod":
        spec = obj.setdefault("spec", {})
        spec.setdefault("restartPolicy", "Always")
        spec.setdefault("dnsPolicy", "ClusterFirst")
        spec.setdefault("schedulerName", "default-scheduler")
        spec.setdefault("terminationGracePeriodSeconds", 30)
        spec.setdefault("serviceAccountName", spec.get("serviceAccount") or "default")
        spec.setdefault("serviceAccount", spec["serviceAccountName"])
        spec.setdefault("securityContext", {})
        spec.setdefault("enableServiceLinks", True)
        spec.setdefault("priority", 0)
        spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
        for c in list(spec.get("containers") or []) + list(spec.get("initContainers") or []):
            _container_defaults(c)
        status = obj.setdefault("status", {})
        status.setdefault("phase", "Pending")
        status.setdefault("qosClass", qos_class(spec))
    elif kind == "Service":
        spec = obj.setdefault("spec", {})
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        if spec.get("clusterIP") is None:
            n = next(_cluster_ips)
            spec["clusterIP"] = f"10.96.{n // 250}.{n % 250 + 1}"
        if spec["clusterIP"] != "None":
            spec.setdefault("clusterIPs", [spec["clusterIP"]])
        for port in spec.get("ports") or []:
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port.get("port"))
        obj.setdefault("status", {"loadBalancer": {}})
    elif kind == "Secret":
        obj.setdefault("type", "Opaque")
        fold_string_data(obj)
    elif kind == "Namespace":
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        obj.setdefault("status", {}).setdefault("phase", "Active")
        labels = obj["metadata"].setdefault("labels", {})
        labels["kubernetes.io/metadata.name"] = obj["metadata"]["name"]
    elif kind == "PersistentVolumeClaim":
        obj.setdefault("status", {}).setdefault("phase", "Pending")
        obj["spec"].setdefault("volumeMode", "Filesystem")
    elif kind == "Event":
        stamp = timestamp()
        obj.setdefault("count", 1)
        obj.setdefault("firstTimestamp", stamp)
        obj.setdefault("lastTimestamp", stamp)
        obj.setdefault("type", "Normal")
        obj.setdefault("source", {})


def fold_string_data(secret: dict[str, Any]) -> None:
    """Secrets: `stringData` is write-only; the server merges it into `data` as base64."""
    string_data = secret.pop("stringData", None) or {}
    data = secret.setdefault("data", {}) if string_data or "data" in secret else None
    if data is not None:
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()


# ---- Table printing (kubectl get) ------------------------------------------------------------


def age(created: str | None) -> str:
    """kubectl's short human duration: 5s, 3m, 2h, 4d."""
    if not created:
        return "<unknown>"
    seconds = max(0, int((now() - parse_timestamp(created)).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * (2 if unit != "d" else 1):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _pod_row(obj: dict[str, Any]) -> list[Any]:
    spec, status = obj.get("spec", {}), obj.get("status", {})
    statuses = status.get("containerStatuses") or []
    ready = sum(1 for s in statuses if s.get("ready"))
    shown = status.get("reason") or status.get("phase", "Pending")
    for s in statuses:
        state = s.get("state") or {}
        if "waiting" in state and state["waiting"].get("reason"):
            shown = state["waiting"]["reason"]
        elif "terminated" in state and obj.get("status", {}).get("phase") != "Running":
            shown = state["terminated"].get("reason") or shown
    if obj["metadata"].get("deletionTimestamp"):
        shown = "Terminating"
    restarts = sum(int(s.get("restartCount", 0)) for s in statuses)
    total = len(spec.get("containers") or [])
    return [
        obj["metadata"]["name"],
        f"{ready}/{total}",
        shown,
        restarts,
        age(obj["metadata"].get("creationTimestamp")),
        status.get("podIP") or "<none>",
        spec.get("nodeName") or "<none>",
    ]


def _node_row(obj: dict[str, Any]) -> list[Any]:
    conditions = {
        c.get("type"): c.get("status") for c in obj.get("status", {}).get("conditions", [])
    }
    shown = "Ready" if conditions.get("Ready") == "True" else "NotReady"
    if obj.get("spec", {}).get("unschedulable"):
        shown += ",SchedulingDisabled"
    labels = obj["metadata"].get("labels") or {}
    roles = sorted(k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/"))
    version = obj.get("status", {}).get("nodeInfo", {}).get("kubeletVersion", "")
    created = obj["metadata"].get("creationTimestamp")
    return [obj["metadata"]["name"], shown, ",".join(roles) or "<none>", age(created), version]


_COLUMNS: dict[str, list[tuple[str, str, int]]] = {
    "Pod": [
        ("Name", "string", 0),
        ("Ready", "string", 0),
        ("Status", "string", 0),
        ("Restarts", "integer", 0),
        ("Age", "string", 0),
        ("IP", "string", 1),
        ("Node", "string", 1),
    ],
    "Node": [
        ("Name", "string", 0),
        ("Status", "string", 0),
        ("Roles", "string", 0),
        ("Age", "string", 0),
        ("Version", "string", 0),
    ],
    "Namespace": [("Name", "string", 0), ("Status", "string", 0), ("Age", "string", 0)],
}


def _row(resource: Resource, obj: dict[str, Any]) -> list[Any]:
    if resource.kind == "Pod":
        return _pod_row(obj)
    if resource.kind == "Node":
        return _node_row(obj)
    created = obj["metadata"].get("creationTimestamp")
    if resource.kind == "Namespace":
        return [obj["metadata"]["name"], obj.get("status", {}).get("phase", ""), age(created)]
    return [obj["metadata"]["name"], age(created)]


def table(resource: Resource, items: list[dict[str, Any]], rv: str, full: bool) -> dict[str, Any]:
    """A meta.k8s.io/v1 Table, the server-side printing `kubectl get` asks for."""
    columns = _COLUMNS.get(resource.kind, [("Name", "string", 0), ("Age", "string", 0)])
    definitions = [
        {
            "name": name,
            "type": kind,
            "format": "name" if name == "Name" else "",
            "description": "",
            "priority": priority,
        }
        for name, kind, priority in columns
    ]
    rows = []
    for obj in items:
        if full:
            shown = dict(obj, kind=resource.kind, apiVersion=resource.api_version)
        else:
            shown = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj["metadata"],
            }
        rows.append({"cells": _row(resource, obj), "object": shown})
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": rv},
        "columnDefinitions": definitions,
        "rows": rows,
    }
