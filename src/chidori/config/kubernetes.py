"""The settings of a `kubernetes` cluster: where the API server is, what executor pods look like.

Chidori's pod hosts the drivers (client mode) and Spark asks Kubernetes for executor pods. This
reads a cluster's raw mapping (YAML or TOML) into frozen `KubernetesSettings`, checking every
value and naming the field (`cluster 'k8s': executor.memory: ...`). `chidori.config` imports this
module, so it raises its own `KubernetesConfigError` (a ValueError), which the caller wraps in
`ConfigError`. Kubernetes objects (tolerations, affinity, security contexts) go into the executor
pod template as written, once their shape is checked (`kubernetes_objects`). No I/O here: the
in-cluster defaults are resolved at run time (`spark_master` from the environment it is given,
the namespace from SERVICE_ACCOUNT_NAMESPACE_FILE).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from functools import partial
from typing import Any

from chidori.config.kubernetes_objects import (
    AFFINITY,
    CONTAINER_SECURITY_CONTEXT,
    POD_SECURITY_CONTEXT,
    TOLERATION,
    Obj,
    ShapeError,
    check_shape,
    is_dns_label,
    is_dns_subdomain,
    is_label_key,
    is_label_value,
    parse_quantity,
)
from chidori.domain.units import format_memory, parse_duration_seconds, parse_memory_mib

SCRATCH_TYPES = ("emptyDir", "hostPath", "pvc", "none")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
DEFAULT_SCRATCH_MOUNT = "/var/data/spark-local"
# The namespace of Chidori's own pod, read at run time when `namespace` is not set.
SERVICE_ACCOUNT_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
# Kubernetes' "restricted" Pod Security Standard, which Spark's images (USER 185) meet.
DEFAULT_POD_SECURITY: Obj = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
DEFAULT_CONTAINER_SECURITY: Obj = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "readOnlyRootFilesystem": False,
}
# Keys the generic cluster parser (`chidori.config._cluster`) reads; accepted and left to it.
_GENERIC_KEYS = {"type", "python", "spark_home", "warm_pool"}


class KubernetesConfigError(ValueError):
    """A bad value in a kubernetes cluster's settings: `field` is its dotted path."""

    def __init__(self, cluster: str, field: str, reason: str) -> None:
        super().__init__(f"cluster {cluster!r}: {field}: {reason}")
        self.cluster, self.field, self.reason = cluster, field, reason


@dataclass(frozen=True)
class ScratchSettings:
    """Fast local disk for shuffle and spills: Spark's local dir (volume `spark-local-dir-1`)."""

    type: str = "emptyDir"
    size: str | None = None  # a Kubernetes quantity, as written (20Gi)
    size_bytes: int | None = None
    path: str | None = None  # hostPath: the node's directory
    storage_class: str | None = None  # pvc: the StorageClass of the on-demand claims
    medium: str = ""  # emptyDir: "" (the node's disk) or "Memory"
    mount_path: str = DEFAULT_SCRATCH_MOUNT


@dataclass(frozen=True)
class ExecutorDefaults:
    """What a job's executors get when the job does not say, and the cap it may not pass."""

    cores: int = 1
    memory: str = "1g"
    memory_overhead: str | None = None  # None: Spark's rule, max(384m, 10% of memory)
    instances: int = 2
    max_instances: int = 20
    pending_timeout_seconds: float = 600.0
    dynamic_allocation: bool = False
    decommission: bool = False


@dataclass(frozen=True)
class PoolSettings:
    """A named choice of nodes a job may make (`spark.chidori.kubernetes.pool`)."""

    name: str
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Obj, ...] = ()
    affinity: Obj | None = None
    priority_class: str | None = None
    decommission: bool | None = None
    scratch: ScratchSettings | None = None  # replaces the cluster's scratch as a whole
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class KubernetesSettings:
    """A `kubernetes` cluster: the API server, the namespace and the executor pods' shape."""

    name: str
    image: str
    api_server: str | None = None  # None: in-cluster (KUBERNETES_SERVICE_HOST/_PORT)
    kubeconfig: str | None = None  # explicit only; never ~/.kube/config
    context: str | None = None
    namespace: str | None = None  # None: the service account's namespace, else "default"
    image_pull_policy: str = "IfNotPresent"
    service_account: str | None = None  # the executor pods' service account
    driver_service_account: str | None = None  # whose short-lived tokens the drivers get
    automount_service_account_token: bool = False  # executors never call the API
    installation: str = "chidori"
    executor: ExecutorDefaults = field(default_factory=ExecutorDefaults)
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Obj, ...] = ()
    affinity: Obj | None = None
    priority_class: str | None = None
    security_context: Obj = field(default_factory=partial(copy.deepcopy, DEFAULT_POD_SECURITY))
    container_security_context: Obj = field(
        default_factory=partial(copy.deepcopy, DEFAULT_CONTAINER_SECURITY)
    )
    scratch: ScratchSettings = field(default_factory=ScratchSettings)
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    pools: Mapping[str, PoolSettings] = field(default_factory=dict)
    default_pool: str | None = None
    conf: Mapping[str, str] = field(default_factory=dict)


# --- Reading the raw mapping -------------------------------------------------------------------

_NAMES: dict[str, tuple[Callable[[str], bool], str]] = {
    "label": (is_dns_label, "a DNS label (lower case letters, digits and -, 63 or less)"),
    "subdomain": (is_dns_subdomain, "a DNS subdomain name (lower case letters, digits, - and .)"),
    "path": (lambda text: text.startswith("/") and ":" not in text, "an absolute path"),
    "image": (lambda text: not any(c.isspace() for c in text), "an image reference"),
}


def _mapping(raw: Any, at: str) -> Mapping[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ShapeError(at, "must be a mapping")
    return raw


def _keys(cls: type, without: str = "name") -> set[str]:
    return {f.name for f in fields(cls) if f.name != without}


def _only(raw: Mapping[str, Any], allowed: set[str], at: str) -> None:
    for key in raw:
        if key not in allowed:
            choices = ", ".join(sorted(allowed - _GENERIC_KEYS))
            raise ShapeError(f"{at}.{key}" if at else str(key), f"is not a setting; use {choices}")


def _name(raw: Any, at: str, kind: str | None = None) -> str | None:
    """None for None, else a non-empty string (of the kind `_NAMES` describes)."""
    if raw is None:
        return None
    if not isinstance(raw, str) or not raw.strip():
        raise ShapeError(at, f"must be a non-empty string, not {raw!r}")
    check, what = _NAMES[kind] if kind else (bool, "")
    if not check(raw):
        raise ShapeError(at, f"{raw!r} is not {what}")
    return raw


def _flag(raw: Any, at: str) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    raise ShapeError(at, f"must be true or false, not {raw!r}")


def _count(raw: Any, at: str, least: int = 1) -> int:
    try:
        if isinstance(raw, bool) or not isinstance(raw, int | str):
            raise ValueError
        number = int(raw)
    except ValueError:
        raise ShapeError(at, f"must be a whole number, not {raw!r}") from None
    if number < least:
        raise ShapeError(at, f"must be at least {least}, not {number}")
    return number


def _spark_size(raw: Any, at: str) -> str | None:
    try:
        return None if raw is None else format_memory(parse_memory_mib(raw))
    except (ValueError, TypeError) as exc:
        raise ShapeError(
            at, str(exc) if isinstance(exc, ValueError) else "must be a size"
        ) from None


def _scalar(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _labels(raw: Any, at: str, values: bool = True, own: bool = True) -> dict[str, str]:
    """Labels by their rules: node selector terms (`own=False`: chidori.io/ keys allowed too),
    annotations (`values=False`: any string value)."""
    result = {}
    for key, value in _mapping(raw, at).items():
        key = str(key)
        if not is_label_key(key):
            raise ShapeError(f"{at}.{key}", "is not a valid key (prefix/name, name of 63 or less)")
        if own and key.startswith("chidori.io/"):
            raise ShapeError(f"{at}.{key}", "the chidori.io/ prefix is Chidori's own")
        if value is None or isinstance(value, Mapping | list):
            raise ShapeError(f"{at}.{key}", f"must be a string, not {value!r}")
        text = _scalar(value)
        if values and not is_label_value(text):
            raise ShapeError(f"{at}.{key}", f"{text!r} is not a valid label value")
        result[key] = text
    return result


def _affinity(raw: Any, at: str) -> Obj | None:
    return None if raw is None else check_shape(raw, AFFINITY, at)


def _placement(raw: Mapping[str, Any], at: str) -> dict[str, Any]:
    """What a cluster and a pool both say about where executors go and what they carry."""
    prefix = f"{at}." if at else ""
    return {
        "node_selector": _labels(raw.get("node_selector"), f"{prefix}node_selector", own=False),
        "tolerations": tuple(
            check_shape(raw.get("tolerations") or [], [TOLERATION], f"{prefix}tolerations")
        ),
        "affinity": _affinity(raw.get("affinity"), f"{prefix}affinity"),
        "priority_class": _name(raw.get("priority_class"), f"{prefix}priority_class", "subdomain"),
        "labels": _labels(raw.get("labels"), f"{prefix}labels"),
        "annotations": _labels(raw.get("annotations"), f"{prefix}annotations", values=False),
    }


_SCRATCH_ONLY = {"path": "hostPath", "storage_class": "pvc", "medium": "emptyDir"}


def _scratch(raw: Any, at: str) -> ScratchSettings:
    raw = _mapping({"type": raw} if isinstance(raw, str) else raw, at)
    _only(raw, _keys(ScratchSettings, "size_bytes"), at)
    kind = raw.get("type", "emptyDir")
    if kind not in SCRATCH_TYPES:
        raise ShapeError(f"{at}.type", f"must be one of {', '.join(SCRATCH_TYPES)}, not {kind!r}")
    for key, owner in _SCRATCH_ONLY.items():
        if raw.get(key) not in (None, "") and kind != owner:
            raise ShapeError(f"{at}.{key}", f"applies to {owner} scratch only, not {kind}")
    size = None if raw.get("size") is None else _scalar(raw["size"])
    size_bytes = None
    if size is not None:
        try:
            size_bytes = int(parse_quantity(size))
        except ValueError as exc:
            raise ShapeError(f"{at}.size", str(exc)) from None
        if size_bytes < 1024 * 1024:
            raise ShapeError(f"{at}.size", f"{size!r} is under 1Mi: a unit missing? (20Gi)")
    if kind == "pvc" and size is None:
        raise ShapeError(f"{at}.size", "is required for pvc scratch (each claim's request)")
    if kind == "none" and size is not None:
        raise ShapeError(f"{at}.size", "does not apply to scratch type none")
    if kind == "hostPath" and raw.get("path") is None:
        raise ShapeError(f"{at}.path", "hostPath scratch needs the node's directory")
    medium = raw.get("medium") or ""
    if medium not in ("", "Memory"):
        raise ShapeError(f"{at}.medium", f'must be "" or Memory, not {medium!r}')
    mount = _name(raw.get("mount_path", DEFAULT_SCRATCH_MOUNT), f"{at}.mount_path", "path")
    return ScratchSettings(
        type=kind,
        size=size,
        size_bytes=size_bytes,
        path=_name(raw.get("path"), f"{at}.path", "path"),
        storage_class=_name(raw.get("storage_class"), f"{at}.storage_class", "subdomain"),
        medium=medium,
        mount_path=(mount or DEFAULT_SCRATCH_MOUNT).rstrip("/") or "/",
    )


_EXECUTOR_KEYS = {f.name for f in fields(ExecutorDefaults)} - {"pending_timeout_seconds"}
_EXECUTOR_KEYS.add("pending_timeout")


def _executor(raw: Any) -> ExecutorDefaults:
    raw = _mapping(raw, "executor")
    _only(raw, _EXECUTOR_KEYS, "executor")
    instances = _count(raw.get("instances", 2), "executor.instances")
    # The cap defaults to 20, or to the default instances when those are more.
    cap = _count(raw.get("max_instances", max(20, instances)), "executor.max_instances")
    if instances > cap:
        raise ShapeError(
            "executor.instances", f"{instances} is over executor.max_instances ({cap})"
        )
    try:
        pending = parse_duration_seconds(raw.get("pending_timeout", "10m"))
    except ValueError as exc:
        raise ShapeError("executor.pending_timeout", str(exc)) from None
    return ExecutorDefaults(
        cores=_count(raw.get("cores", 1), "executor.cores"),
        memory=_spark_size(raw.get("memory", "1g"), "executor.memory") or "1g",
        memory_overhead=_spark_size(raw.get("memory_overhead"), "executor.memory_overhead"),
        instances=instances,
        max_instances=cap,
        pending_timeout_seconds=pending,
        dynamic_allocation=_flag(
            raw.get("dynamic_allocation", False), "executor.dynamic_allocation"
        ),
        decommission=_flag(raw.get("decommission", False), "executor.decommission"),
    )


def _pool(name: str, raw: Any) -> PoolSettings:
    at = f"pools.{name}"
    if not is_dns_label(name):
        raise ShapeError(at, "a pool's name must be a DNS label (lower case, digits, -)")
    raw = _mapping(raw, at)
    _only(raw, _keys(PoolSettings), at)
    decommission = raw.get("decommission")
    return PoolSettings(
        name=name,
        **_placement(raw, at),
        decommission=None if decommission is None else _flag(decommission, f"{at}.decommission"),
        scratch=None if raw.get("scratch") is None else _scratch(raw["scratch"], f"{at}.scratch"),
    )


def _api_server(raw: Any) -> str | None:
    url = _name(raw, "api_server")
    if url is not None and not re.match(
        r"^https?://([^/\s:\[\]]+|\[[0-9a-fA-F:]+\])(:\d+)?/?$", url
    ):
        raise ShapeError("api_server", f"must be https://HOST[:PORT], not {url!r}")
    return None if url is None else url.rstrip("/")


def parse_kubernetes_settings(name: str, raw: Mapping[str, Any]) -> KubernetesSettings:
    """Read a `type: kubernetes` cluster's mapping; KubernetesConfigError names a bad field."""
    try:
        return _settings(name, raw)
    except ShapeError as exc:
        raise KubernetesConfigError(name, exc.at, exc.reason) from None


def _settings(name: str, raw: Mapping[str, Any]) -> KubernetesSettings:
    raw = _mapping(raw, "settings")
    if "master" in raw:
        raise ShapeError(
            "master", "a kubernetes cluster takes api_server (the master is k8s://...)"
        )
    _only(raw, _keys(KubernetesSettings) | _GENERIC_KEYS, "")
    if raw.get("context") is not None and raw.get("kubeconfig") is None:
        raise ShapeError("context", "needs kubeconfig (a context names an entry of that file)")
    policy = raw.get("image_pull_policy", "IfNotPresent")
    if policy not in PULL_POLICIES:
        raise ShapeError("image_pull_policy", f"must be one of {', '.join(PULL_POLICIES)}")
    image = _name(raw.get("image"), "image", "image")
    if image is None:
        raise ShapeError("image", "is required: the executors' image (registry/name:tag)")
    pools = {str(k): _pool(str(k), v) for k, v in _mapping(raw.get("pools"), "pools").items()}
    default_pool = _name(raw.get("default_pool"), "default_pool")
    if default_pool is not None and default_pool not in pools:
        known = ", ".join(sorted(pools)) or "none are configured"
        raise ShapeError("default_pool", f"{default_pool!r} is not one of the pools ({known})")
    conf = _mapping(raw.get("conf"), "conf")
    for key, value in conf.items():
        if value is None or isinstance(value, Mapping | list):
            raise ShapeError(f"conf.{key}", f"must be a string, not {value!r}")
    pod_security = raw.get("security_context", DEFAULT_POD_SECURITY) or {}
    container_security = raw.get("container_security_context", DEFAULT_CONTAINER_SECURITY) or {}
    return KubernetesSettings(
        name=name,
        image=image,
        api_server=_api_server(raw.get("api_server")),
        kubeconfig=_name(raw.get("kubeconfig"), "kubeconfig", "path"),
        context=_name(raw.get("context"), "context"),
        namespace=_name(raw.get("namespace"), "namespace", "label"),
        image_pull_policy=policy,
        service_account=_name(raw.get("service_account"), "service_account", "subdomain"),
        driver_service_account=_name(
            raw.get("driver_service_account"), "driver_service_account", "subdomain"
        ),
        automount_service_account_token=_flag(
            raw.get("automount_service_account_token", False), "automount_service_account_token"
        ),
        installation=_name(raw.get("installation"), "installation", "label") or "chidori",
        executor=_executor(raw.get("executor")),
        **_placement(raw, ""),
        security_context=check_shape(pod_security, POD_SECURITY_CONTEXT, "security_context"),
        container_security_context=check_shape(
            container_security, CONTAINER_SECURITY_CONTEXT, "container_security_context"
        ),
        scratch=_scratch(raw.get("scratch"), "scratch"),
        pools=pools,
        default_pool=default_pool,
        conf={str(k): _scalar(v) for k, v in conf.items()},
    )


def api_server_url(settings: KubernetesSettings, environ: Mapping[str, str]) -> str:
    """The API server's URL: the configured one, else the in-cluster service from `environ`."""
    if settings.api_server:
        return settings.api_server
    host, port = environ.get("KUBERNETES_SERVICE_HOST"), environ.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        reason = "is not set, and this is not a pod (no KUBERNETES_SERVICE_HOST/_PORT)"
        raise KubernetesConfigError(settings.name, "api_server", reason)
    return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"


def spark_master(settings: KubernetesSettings, environ: Mapping[str, str]) -> str:
    """Spark's master URL, `k8s://https://HOST:PORT` (Spark wants the port written)."""
    url = api_server_url(settings, environ)
    if not re.search(r":\d+$", url):
        url += ":443" if url.startswith("https://") else ":80"
    return f"k8s://{url}"
