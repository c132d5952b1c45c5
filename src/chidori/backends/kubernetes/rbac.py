"""The Kubernetes RBAC objects a `kubernetes` cluster needs, as plain objects (YAML or JSON).

Three identities, least privilege each:
- the server (Chidori's pod): a Role in the jobs' namespace for what Chidori itself does
  (cleanup and sweep by label, events of pending executors, short-lived tokens for drivers)
  and what the drivers it hosts do when they run with its credentials; a ClusterRole that only
  reads nodes and pods, to see each node's free capacity (node-aware admission);
- the drivers (`driver_role`): what Spark's driver does through fabric8 in client mode, for a
  service account whose short-lived tokens Chidori mints (TokenRequest) instead of lending a
  driver its own;
- the executors: a service account with no rights, its token not mounted.
Every rule carries the API calls that need it. The chart renders these; `chidori` may print them.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import yaml

RBAC_API = "rbac.authorization.k8s.io/v1"


class Rule(NamedTuple):
    """A PolicyRule and the API calls that need it (the comment the YAML carries)."""

    groups: tuple[str, ...]
    resources: tuple[str, ...]
    verbs: tuple[str, ...]
    why: str

    def to_object(self, names: Sequence[str] = ()) -> dict[str, Any]:
        rule: dict[str, Any] = {
            "apiGroups": list(self.groups),
            "resources": list(self.resources),
            "verbs": list(self.verbs),
        }
        if names:
            rule["resourceNames"] = list(names)
        return rule


# What Spark's driver calls through fabric8 in client mode, and Chidori's cleanup of the same.
SPARK_RULES = (
    Rule(
        ("",),
        ("pods",),
        ("get", "list", "watch", "create", "delete", "deletecollection", "patch"),
        "Spark's driver: gets its own pod (spark.kubernetes.driver.pod.name, the executors'"
        " owner), creates executor pods, watches and lists them by label, deletes them"
        " (scale-down; at stop by label: deletecollection), patches decommissioning executors'"
        " labels and deletion costs. Chidori: an attempt's cleanup by label, the sweep of strays.",
    ),
    Rule(
        ("",),
        ("configmaps",),
        ("create", "get", "list", "delete", "deletecollection"),
        "Spark's driver: the executors' conf ConfigMap (created, deleted by label at stop)."
        " Chidori: cleanup by label.",
    ),
    Rule(
        ("",),
        ("services",),
        ("create", "get", "list", "delete", "deletecollection"),
        "Spark's driver: the services it makes for its resources, deleted by label at stop."
        " Chidori: cleanup by label.",
    ),
    Rule(
        ("",),
        ("persistentvolumeclaims",),
        ("create", "get", "list", "delete", "deletecollection"),
        "Spark's driver: OnDemand scratch claims, one per executor (created, listed and deleted"
        " by label). Chidori: an attempt's claims deleted by label.",
    ),
)
EVENTS_RULE = Rule(
    ("",),
    ("events",),
    ("get", "list", "watch"),
    "Chidori: why an executor pod stays Pending (FailedScheduling, FailedMount), for the"
    " pending timeout and the job's wait reason.",
)
TOKEN_RULE = Rule(
    ("",),
    ("serviceaccounts/token",),
    ("create",),
    "Chidori: TokenRequest, a short-lived token per driver, of the named accounts only.",
)
NODES_RULE = Rule(
    ("",),
    ("nodes",),
    ("get", "list", "watch"),
    "Chidori (node-aware admission): each node's allocatable, taints, labels and conditions.",
)
BOUND_PODS_RULE = Rule(
    ("",),
    ("pods",),
    ("list", "watch"),
    "Chidori (node-aware admission): the requests of the pods bound to each node, in every"
    " namespace, to know what is left of it. Read-only.",
)
_RULES = (*SPARK_RULES, EVENTS_RULE, TOKEN_RULE, NODES_RULE, BOUND_PODS_RULE)


def reason(rule: Mapping[str, Any]) -> str | None:
    """Why a rule of these objects is there (its comment), or None for a rule not from here."""
    for known in _RULES:
        if known.to_object(rule.get("resourceNames") or ()) == dict(rule):
            return known.why
    return None


def base_name(installation: str) -> str:
    """The name of this installation's RBAC objects: `chidori`, or `chidori-<installation>`."""
    return "chidori" if installation == "chidori" else f"chidori-{installation}"


def _metadata(name: str, installation: str, namespace: str | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": name,
        "labels": {"app.kubernetes.io/name": "chidori", "chidori.io/installation": installation},
    }
    if namespace is not None:
        metadata["namespace"] = namespace
    return metadata


def server_role(
    namespace: str, installation: str, *, token_for: Sequence[str] = ()
) -> dict[str, Any]:
    """The server's Role in the jobs' namespace: Spark's rules (drivers run with the server's
    credentials unless they get their own account's tokens), events, and TokenRequest for the
    accounts in `token_for` (none: no token rule)."""
    rules = [rule.to_object() for rule in (*SPARK_RULES, EVENTS_RULE)]
    if token_for:
        rules.append(TOKEN_RULE.to_object(token_for))
    return {
        "apiVersion": RBAC_API,
        "kind": "Role",
        "metadata": _metadata(base_name(installation), installation, namespace),
        "rules": rules,
    }


def driver_role(namespace: str, installation: str) -> dict[str, Any]:
    """The drivers' Role: Spark's rules only (no events, no tokens, nothing cluster-wide)."""
    return {
        "apiVersion": RBAC_API,
        "kind": "Role",
        "metadata": _metadata(f"{base_name(installation)}-driver", installation, namespace),
        "rules": [rule.to_object() for rule in SPARK_RULES],
    }


def capacity_cluster_role(installation: str) -> dict[str, Any]:
    """Read-only, cluster-wide: nodes and the pods bound to them, for each node's free room."""
    return {
        "apiVersion": RBAC_API,
        "kind": "ClusterRole",
        "metadata": _metadata(f"{base_name(installation)}-capacity", installation),
        "rules": [NODES_RULE.to_object(), BOUND_PODS_RULE.to_object()],
    }


def service_account(
    namespace: str, name: str, installation: str, *, automount: bool = True
) -> dict[str, Any]:
    """A ServiceAccount; `automount=False` for the executors', which never call the API."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _metadata(name, installation, namespace),
        "automountServiceAccountToken": automount,
    }


def role_binding(namespace: str, role: str, account: str, installation: str) -> dict[str, Any]:
    return {
        "apiVersion": RBAC_API,
        "kind": "RoleBinding",
        "metadata": _metadata(role, installation, namespace),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
    }


def cluster_role_binding(
    namespace: str, cluster_role: str, account: str, installation: str
) -> dict[str, Any]:
    ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_role}
    return {
        "apiVersion": RBAC_API,
        "kind": "ClusterRoleBinding",
        "metadata": _metadata(cluster_role, installation),
        "roleRef": ref,
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
    }


def rbac_objects(
    namespace: str,
    installation: str = "chidori",
    *,
    driver_account: str | None = None,
    executor_account: str | None = None,
    node_aware: bool = True,
) -> list[dict[str, Any]]:
    """Everything, in the order to apply it: the server's account, Role and binding; the
    drivers' account, Role and binding (when `driver_account` is given: the server mints its
    tokens); the executors' account (no rights); the capacity ClusterRole and its binding
    (`node_aware`)."""
    server = base_name(installation)
    objects = [
        service_account(namespace, server, installation),
        server_role(namespace, installation, token_for=[driver_account] if driver_account else []),
        role_binding(namespace, server, server, installation),
    ]
    if driver_account:
        role = driver_role(namespace, installation)
        objects += [
            service_account(namespace, driver_account, installation, automount=False),
            role,
            role_binding(namespace, role["metadata"]["name"], driver_account, installation),
        ]
    if executor_account:
        objects.append(service_account(namespace, executor_account, installation, automount=False))
    if node_aware:
        capacity = capacity_cluster_role(installation)
        name = capacity["metadata"]["name"]
        objects += [capacity, cluster_role_binding(namespace, name, server, installation)]
    return objects


def rbac_yaml(objects: Sequence[Mapping[str, Any]]) -> str:
    """The objects as one YAML stream, each rule under a comment saying why it is there."""
    documents = []
    for obj in objects:
        head = {key: value for key, value in obj.items() if key != "rules"}
        text = yaml.safe_dump(head, sort_keys=False)
        if "rules" in obj:
            text += "rules:\n"
            for rule in obj["rules"]:
                why = reason(rule)
                if why:
                    text += "".join(f"# {line}\n" for line in textwrap.wrap(why, 96))
                text += yaml.safe_dump([dict(rule)], sort_keys=False)
        documents.append(text)
    return "---\n".join(documents)
