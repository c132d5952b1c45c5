"""Cluster-level helpers on top of the store: nodes, bindings, events, tokens, pod logs.

These are what other components would write in a real cluster (a kubelet registering its node
and reporting conditions, the node lifecycle controller, the token issuer, the container
runtime's log files); tests and the simulated kubelet call them in-process.

- Nodes are created with capacity = allocatable, the four kubelet conditions (Ready True,
  MemoryPressure / DiskPressure / PIDPressure False) and address 127.0.0.1. Condition changes
  update `lastTransitionTime` only when the status changes. The taints a node lifecycle
  controller would add for NotReady or pressure conditions are NOT written to the node: the
  scheduler in `scheduler.py` derives them when it filters.
- Events are core/v1 Events in the legacy recorder's shape (source, firstTimestamp,
  lastTimestamp, count); a repeat of the same object, type, reason, message and source bumps
  the count instead of creating another, as client-go's event correlator does (without its
  spam filter or its similar-event aggregation).
- Tokens from the TokenRequest API are unsigned JWT-shaped strings (header.claims.random); the
  server only recognises the ones it issued (no signature, no audience check, no expiry check
  beyond the stated expirationTimestamp being returned).
- Logs come from a provider callback (the kubelet registers one); no provider = no logs.
"""

from __future__ import annotations

import base64
import datetime
import json
import secrets
import threading
from collections.abc import Callable, Iterable
from typing import Any

from tests.kubesim import resources
from tests.kubesim.errors import ApiError
from tests.kubesim.objects import Obj
from tests.kubesim.store import Store

LogProvider = Callable[[str, str, str], str | None]
PRESSURES = ("MemoryPressure", "DiskPressure", "PIDPressure")
_GOOD_REASON = {
    "Ready": ("KubeletReady", "kubelet is posting ready status"),
    "MemoryPressure": ("KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
    "DiskPressure": ("KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    "PIDPressure": ("KubeletHasSufficientPID", "kubelet has sufficient PID available"),
}


def _condition(kind: str, status: str, reason: str, message: str) -> Obj:
    stamp = resources.timestamp()
    return {
        "type": kind,
        "status": status,
        "lastHeartbeatTime": stamp,
        "lastTransitionTime": stamp,
        "reason": reason,
        "message": message,
    }


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Cluster(Store):
    """The store plus the in-process API of the other cluster components."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._tokens: dict[str, Obj] = {}
        self._log_providers: list[LogProvider] = []
        self._token_lock = threading.Lock()

    # ---- nodes ----

    def add_node(
        self,
        name: str,
        *,
        cpu: str = "4",
        memory: str = "8Gi",
        pods: str = "110",
        labels: dict[str, str] | None = None,
        taints: Iterable[Obj] = (),
        unschedulable: bool = False,
    ) -> Obj:
        """Register a Ready node with this capacity (= allocatable)."""
        capacity = {"cpu": cpu, "memory": memory, "pods": pods, "ephemeral-storage": "100Gi"}
        node_labels = {
            "kubernetes.io/hostname": name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            **(labels or {}),
        }
        spec: Obj = {"taints": list(taints)} if taints else {}
        if unschedulable:
            spec["unschedulable"] = True
        info = {
            "kubeletVersion": resources.SERVER_VERSION["gitVersion"],
            "kubeProxyVersion": "",
            "containerRuntimeVersion": "kubesim://1.0",
            "operatingSystem": "linux",
            "architecture": "amd64",
            "osImage": "kubesim (local processes)",
            "kernelVersion": "",
            "machineID": secrets.token_hex(16),
            "systemUUID": secrets.token_hex(16),
            "bootID": secrets.token_hex(16),
        }
        status = {
            "capacity": capacity,
            "allocatable": dict(capacity),
            "conditions": [
                _condition(kind, "True" if kind == "Ready" else "False", *reason)
                for kind, reason in _GOOD_REASON.items()
            ],
            "addresses": [
                {"type": "InternalIP", "address": "127.0.0.1"},
                {"type": "Hostname", "address": name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": info,
        }
        node = {"metadata": {"name": name, "labels": node_labels}, "spec": spec, "status": status}
        return self.create("nodes", node)

    def set_node_condition(
        self, name: str, kind: str, status: str, reason: str = "", message: str = ""
    ) -> Obj:
        """Set one node condition ("Ready", "MemoryPressure", ...) to "True"/"False"/"Unknown"."""

        def change(node: Obj) -> None:
            conditions = node.setdefault("status", {}).setdefault("conditions", [])
            current = next((c for c in conditions if c.get("type") == kind), None)
            default = _GOOD_REASON.get(kind, ("", ""))
            if (status == "True") != (kind == "Ready"):
                default = (f"Kubelet{'NotReady' if kind == 'Ready' else 'Has' + kind}", "")
            new = _condition(kind, status, reason or default[0], message or default[1])
            if current is None:
                conditions.append(new)
            else:
                if current.get("status") == status:
                    new["lastTransitionTime"] = current.get("lastTransitionTime")
                current.update(new)

        return self.mutate("nodes", name, change, subresource="status")

    def set_node_taints(self, name: str, taints: Iterable[Obj]) -> Obj:
        """Replace the node's `spec.taints`."""
        return self.mutate("nodes", name, lambda n: n["spec"].__setitem__("taints", list(taints)))

    def set_node_unschedulable(self, name: str, unschedulable: bool = True) -> Obj:
        """Cordon (True) or uncordon (False) the node."""

        def change(node: Obj) -> None:
            if unschedulable:
                node.setdefault("spec", {})["unschedulable"] = True
            else:
                node.setdefault("spec", {}).pop("unschedulable", None)

        return self.mutate("nodes", name, change)

    def bind_pod(self, name: str, node: str, namespace: str | None = None) -> Obj:
        """What POST pods/NAME/binding does: set spec.nodeName (409 if already bound)."""

        def change(pod: Obj) -> None:
            bound = pod.get("spec", {}).get("nodeName")
            if bound:
                raise ApiError(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on pods/binding "{name}": pod {name} is '
                    f'already assigned to node "{bound}"',
                    {"name": name, "kind": "pods/binding"},
                )
            pod["spec"]["nodeName"] = node

        return self.mutate("pods", name, change, namespace)

    # ---- events ----

    def add_event(
        self,
        involved: Obj,
        reason: str,
        message: str,
        *,
        type: str = "Normal",
        component: str = "kubesim",
        host: str = "",
    ) -> Obj:
        """Record a core/v1 Event about `involved` (an object as stored), or bump its count."""
        meta = involved.get("metadata", {})
        namespace = meta.get("namespace") or "default"
        ref = {
            "kind": involved.get("kind", ""),
            "namespace": meta.get("namespace", ""),
            "name": meta.get("name", ""),
            "uid": meta.get("uid", ""),
            "apiVersion": involved.get("apiVersion", "v1"),
            "resourceVersion": meta.get("resourceVersion", ""),
        }
        source = {"component": component, **({"host": host} if host else {})}
        with self._lock:
            for event in self.list("events", namespace):
                same = event.get("involvedObject", {}).get("uid") == ref["uid"]
                if (
                    same
                    and (event.get("reason"), event.get("message"), event.get("type"))
                    == (
                        reason,
                        message,
                        type,
                    )
                    and event.get("source") == source
                ):

                    def bump(e: Obj) -> None:
                        e["count"] = int(e.get("count", 1)) + 1
                        e["lastTimestamp"] = resources.timestamp()

                    return self.mutate("events", event["metadata"]["name"], bump, namespace)
            stamp = resources.timestamp()
            event = {
                "metadata": {
                    "name": f"{ref['name']}.{secrets.token_hex(8)}",
                    "namespace": namespace,
                },
                "involvedObject": ref,
                "reason": reason,
                "message": message,
                "type": type,
                "source": source,
                "firstTimestamp": stamp,
                "lastTimestamp": stamp,
                "count": 1,
                "eventTime": None,
                "reportingComponent": component,
                "reportingInstance": host,
            }
            return self.create("events", event, namespace)

    def events_for(self, obj: Obj) -> list[Obj]:
        """The events whose involvedObject is `obj` (by uid), oldest first."""
        meta = obj["metadata"]
        found = self.list(
            "events",
            meta.get("namespace") or "default",
            field_selector=f"involvedObject.uid={meta['uid']}",
        )
        return sorted(found, key=lambda e: e["metadata"]["resourceVersion"].zfill(12))

    # ---- service account tokens ----

    def issue_token(
        self,
        namespace: str,
        service_account: str,
        audiences: list[str] | None = None,
        expiration_seconds: int = 3600,
        bound_object: Obj | None = None,
    ) -> Obj:
        """The TokenRequest the API would answer: `status.token`, `status.expirationTimestamp`."""
        sa = self.get("serviceaccounts", service_account, namespace)
        if expiration_seconds < 600:
            raise ApiError(
                422,
                "Invalid",
                'TokenRequest.authentication.k8s.io "" is invalid: spec.expirationSeconds: '
                f"Invalid value: {expiration_seconds}: may not specify a duration less than 10 "
                "minutes",
            )
        audiences = audiences or ["https://kubernetes.default.svc.cluster.local"]
        issued = resources.now()
        expires = issued + datetime.timedelta(seconds=expiration_seconds)
        claims = {
            "aud": audiences,
            "exp": int(expires.timestamp()),
            "iat": int(issued.timestamp()),
            "iss": "https://kubernetes.default.svc.cluster.local",
            "sub": f"system:serviceaccount:{namespace}:{service_account}",
            "kubernetes.io": {
                "namespace": namespace,
                "serviceaccount": {"name": service_account, "uid": sa["metadata"]["uid"]},
            },
        }
        header = _b64url(json.dumps({"alg": "none", "kid": "kubesim"}).encode())
        token = (
            f"{header}.{_b64url(json.dumps(claims).encode())}.{_b64url(secrets.token_bytes(16))}"
        )
        with self._token_lock:
            self._tokens[token] = claims
        spec: Obj = {"audiences": audiences, "expirationSeconds": expiration_seconds}
        spec["boundObjectRef"] = bound_object
        return {
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {
                "name": service_account,
                "namespace": namespace,
                "creationTimestamp": resources.timestamp(issued),
            },
            "spec": spec,
            "status": {"token": token, "expirationTimestamp": resources.timestamp(expires)},
        }

    def token_claims(self, token: str) -> Obj | None:
        """The claims of a token this server issued (None if it did not issue it)."""
        with self._token_lock:
            return self._tokens.get(token)

    # ---- logs ----

    def add_log_provider(self, provider: LogProvider) -> None:
        """Register `provider(namespace, pod, container) -> text or None` for pods/log."""
        self._log_providers.append(provider)

    def remove_log_provider(self, provider: LogProvider) -> None:
        if provider in self._log_providers:
            self._log_providers.remove(provider)

    def pod_log(self, namespace: str, pod: str, container: str) -> str | None:
        """What the first provider that knows the container returns."""
        for provider in list(self._log_providers):
            text = provider(namespace, pod, container)
            if text is not None:
                return text
        return None
