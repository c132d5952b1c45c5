"""The executor pod template of a `kubernetes` cluster and the Spark conf that goes with it.

Pure functions, no I/O. Spark reads the template from `spark.kubernetes.executor.podTemplateFile`
and builds each executor pod on it: it keeps what Spark has no setting for (tolerations,
affinity, priority class, security contexts, volumes, the container's ephemeral-storage
request), adds its own labels, node selectors, volumes and env, and overwrites the container's
image, pull policy, cpu and memory, the restart policy and `allowPrivilegeEscalation` (Spark 4.3:
`spark.kubernetes.executor.securityContext.allowPrivilegeEscalation`, which `executor_conf` sets
to the template's value). The container is named `EXECUTOR_CONTAINER`, as
`spark.kubernetes.executor.podTemplateContainerName` says. Scratch space is the volume
`spark-local-dir-1`: Spark makes every mount named `spark-local-dir-*` an executor's local dir
(SPARK_LOCAL_DIRS), so `spark.local.dir` is left alone (in client mode the driver, in Chidori's
pod, would read it too). A job chooses a pool with `POOL_CONF_KEY`; the keys in
`forbidden_conf` are the admin's choices, which a job may not make.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

from chidori.config.kubernetes import KubernetesSettings, PoolSettings, ScratchSettings
from chidori.config.kubernetes_objects import is_label_key, is_label_value, parse_quantity
from chidori.domain.units import format_memory, parse_memory_mib

POOL_CONF_KEY = "spark.chidori.kubernetes.pool"
EXECUTOR_CONTAINER = "spark-kubernetes-executor"  # Spark's own default name
SCRATCH_VOLUME = "spark-local-dir-1"
INSTALLATION_LABEL = "chidori.io/installation"
JOB_LABEL = "chidori.io/job"
ATTEMPT_LABEL = "chidori.io/attempt"
SERVER_LABEL = "chidori.io/server"
_PVC = f"spark.kubernetes.executor.volumes.persistentVolumeClaim.{SCRATCH_VOLUME}"
_DA = "spark.dynamicAllocation"
_DECOMMISSION_KEYS = (
    "spark.decommission.enabled",
    "spark.storage.decommission.enabled",
    "spark.storage.decommission.shuffleBlocks.enabled",
    "spark.storage.decommission.rddBlocks.enabled",
)

# Keys whose value is Chidori's or the admin's: where the driver talks to Kubernetes and as whom,
# which namespace, image, nodes, scheduler and volumes executors get, who owns and cleans up
# their pods and claims, and which code may rewrite the pods (feature steps, allocators).
FORBIDDEN_KEYS = frozenset(
    {
        "spark.master",
        "spark.submit.deployMode",
        "spark.driver.host",
        "spark.driver.bindAddress",
        "spark.driver.port",
        "spark.driver.blockManager.port",
        "spark.kubernetes.namespace",
        "spark.kubernetes.context",
        "spark.kubernetes.trust.certificates",
        "spark.kubernetes.submitInDriver",
        "spark.kubernetes.container.image",
        "spark.kubernetes.container.image.pullPolicy",
        "spark.kubernetes.container.image.pullSecrets",
        "spark.kubernetes.executor.container.image",
        "spark.kubernetes.executor.podTemplateFile",
        "spark.kubernetes.executor.podTemplateContainerName",
        "spark.kubernetes.executor.podNamePrefix",
        "spark.kubernetes.executor.scheduler.name",
        "spark.kubernetes.executor.deleteOnTermination",
        "spark.kubernetes.executor.pod.featureSteps",
        "spark.kubernetes.executor.pod.excludedFeatureSteps",
        "spark.kubernetes.executor.securityContext.allowPrivilegeEscalation",
        "spark.kubernetes.securityContext.allowPrivilegeEscalation",
        "spark.kubernetes.allocation.pods.allocator",
        "spark.kubernetes.hadoop.configMapName",
    }
)
FORBIDDEN_PREFIXES = (
    "spark.kubernetes.authenticate.",
    "spark.kubernetes.driver.",  # the driver's pod is Chidori's (name, owner of claims, master)
    "spark.kubernetes.scheduler.",
    "spark.kubernetes.node.selector.",
    "spark.kubernetes.executor.node.selector.",
    "spark.kubernetes.executor.volumes.",
    "spark.kubernetes.executor.secrets.",
    "spark.kubernetes.executor.secretKeyRef.",
    "spark.kubernetes.executor.pvc.",  # growing the scratch claims
    "spark.kubernetes.kerberos.",  # mounts the namespace's secrets and config maps
    "spark.chidori.kubernetes.",  # all but the pool choice
)
# The driver's Kubernetes client timeouts are the one driver setting a job may still make.
_ALLOWED = frozenset(
    {
        POOL_CONF_KEY,
        "spark.kubernetes.driver.connectionTimeout",
        "spark.kubernetes.driver.requestTimeout",
    }
)
_METADATA_PREFIXES = ("spark.kubernetes.executor.label.", "spark.kubernetes.executor.annotation.")
_RESERVED_DOMAINS = ("chidori.io", "kubernetes.io", "k8s.io")


class JobChoiceError(ValueError):
    """A job asks for what this cluster does not offer: an unknown pool, too many executors."""


class ExecutorDemand(NamedTuple):
    """A job's gang minimum: how many executors, and what each requests of a node."""

    executors: int
    millicores: int  # the cpu request: spark.kubernetes.executor.request.cores, else the cores
    memory_bytes: int  # memory + overhead (+ off-heap, + PySpark's when Spark adds it)


def forbidden_conf(job_conf: Mapping[str, str]) -> list[str]:
    """The keys of a job's own conf that only Chidori or the admin may set, sorted."""
    return sorted(key for key in job_conf if _forbidden(key))


def _forbidden(key: str) -> bool:
    if key in _ALLOWED:
        return False
    if key in FORBIDDEN_KEYS or key.startswith(FORBIDDEN_PREFIXES):
        return True
    for prefix in _METADATA_PREFIXES:
        if key.startswith(prefix):
            domain = key[len(prefix) :].rpartition("/")[0]
            return any(domain == d or domain.endswith(f".{d}") for d in _RESERVED_DOMAINS)
    return False


def resolve_pool(settings: KubernetesSettings, job_conf: Mapping[str, str]) -> str | None:
    """The pool a job runs on: its `POOL_CONF_KEY`, else the cluster's default (None: no pool)."""
    name = job_conf.get(POOL_CONF_KEY) or settings.default_pool
    _pool(settings, name)
    return name


def _pool(settings: KubernetesSettings, name: str | None) -> PoolSettings | None:
    if name is None:
        return None
    if name not in settings.pools:
        offered = ", ".join(sorted(settings.pools))
        raise JobChoiceError(
            f"{POOL_CONF_KEY}: cluster {settings.name!r} has no pool {name!r}; "
            + (f"its pools are {offered}" if offered else "it has no pools")
        )
    return settings.pools[name]


def effective_scratch(settings: KubernetesSettings, pool_name: str | None) -> ScratchSettings:
    """The pool's scratch if it has one, else the cluster's."""
    pool = _pool(settings, pool_name)
    return pool.scratch if pool is not None and pool.scratch is not None else settings.scratch


def ephemeral_storage_bytes(settings: KubernetesSettings, pool_name: str | None) -> int:
    """The ephemeral-storage each executor pod requests (emptyDir scratch on disk with a size)."""
    scratch = effective_scratch(settings, pool_name)
    disk = scratch.type == "emptyDir" and scratch.medium == ""
    return (scratch.size_bytes or 0) if disk else 0


def _plain(value: Any) -> Any:
    """A deep copy made of dicts and lists (settings hold read-only mappings and tuples)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def executor_pod_template(
    settings: KubernetesSettings, pool_name: str | None, labels: Mapping[str, str]
) -> dict[str, Any]:
    """The executor pod template for one attempt, as a Pod object (write it as YAML or JSON).

    Labels: the cluster's, then the pool's, then `chidori.io/installation`, then `labels`
    (Chidori's own: job, attempt, server), each winning over the ones before. The node selector
    is the cluster's and the pool's (the pool wins a key both name), tolerations both lists,
    affinity and priority class the pool's if it sets them, else the cluster's."""
    pool = _pool(settings, pool_name) or PoolSettings(name="")
    for key, value in labels.items():
        if not is_label_key(key) or not is_label_value(value):
            raise ValueError(f"label {key}={value!r} is not a valid Kubernetes label")
    scratch = effective_scratch(settings, pool_name)
    metadata: dict[str, Any] = {
        "labels": {
            **settings.labels,
            **pool.labels,
            INSTALLATION_LABEL: settings.installation,
            **labels,
        }
    }
    annotations = {**settings.annotations, **pool.annotations}
    if annotations:
        metadata["annotations"] = annotations
    container: dict[str, Any] = {
        "name": EXECUTOR_CONTAINER,
        "image": settings.image,
        "imagePullPolicy": settings.image_pull_policy,
    }
    if settings.container_security_context:
        container["securityContext"] = _plain(settings.container_security_context)
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": settings.automount_service_account_token,
    }
    if settings.service_account:
        spec["serviceAccountName"] = settings.service_account
    node_selector = {**settings.node_selector, **pool.node_selector}
    if node_selector:
        spec["nodeSelector"] = node_selector
    tolerations = _plain([*settings.tolerations, *pool.tolerations])
    if tolerations:
        spec["tolerations"] = tolerations
    affinity = pool.affinity if pool.affinity is not None else settings.affinity
    if affinity:
        spec["affinity"] = _plain(affinity)
    priority_class = pool.priority_class or settings.priority_class
    if priority_class:
        spec["priorityClassName"] = priority_class
    if settings.security_context:
        spec["securityContext"] = _plain(settings.security_context)
    volume = _scratch_volume(scratch)
    if volume is not None:
        spec["volumes"] = [volume]
        container["volumeMounts"] = [{"name": SCRATCH_VOLUME, "mountPath": scratch.mount_path}]
    if ephemeral_storage_bytes(settings, pool_name):
        container["resources"] = {"requests": {"ephemeral-storage": scratch.size}}
    spec["containers"] = [container]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def _scratch_volume(scratch: ScratchSettings) -> dict[str, Any] | None:
    """The template's scratch volume; pvc scratch is Spark's (an on-demand claim per executor)."""
    if scratch.type == "emptyDir":
        empty_dir: dict[str, Any] = {}
        if scratch.medium:
            empty_dir["medium"] = scratch.medium
        if scratch.size:
            empty_dir["sizeLimit"] = scratch.size
        return {"name": SCRATCH_VOLUME, "emptyDir": empty_dir}
    if scratch.type == "hostPath":
        # Directory, not DirectoryOrCreate: a node without the disk mounted fails the pod
        # (Pending past the timeout) instead of spilling onto its root disk.
        return {"name": SCRATCH_VOLUME, "hostPath": {"path": scratch.path, "type": "Directory"}}
    return None


def executor_conf(
    settings: KubernetesSettings,
    pool_name: str | None,
    job_conf: Mapping[str, str],
    *,
    labels: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The Spark conf the template implies, to lay over `job_conf` (the cluster's conf, then the
    job's, already cleared by `forbidden_conf`). It sets the container, image and executor
    identity, the executors' size and count where the job did not (the job's own choices are
    checked and kept), the caps, dynamic allocation, decommissioning (for a pool or cluster that
    asks for it, unless the job set those keys) and pvc scratch (Spark's OnDemand claims,
    labelled with `labels` so Chidori's cleanup by label finds them). JobChoiceError says what
    a job asked for that this cluster does not give."""
    pool = _pool(settings, pool_name)
    defaults = settings.executor
    security = settings.container_security_context
    conf: dict[str, str] = {
        "spark.kubernetes.executor.podTemplateContainerName": EXECUTOR_CONTAINER,
        "spark.kubernetes.container.image": settings.image,
        "spark.kubernetes.executor.container.image": settings.image,
        "spark.kubernetes.container.image.pullPolicy": settings.image_pull_policy,
        "spark.kubernetes.executor.deleteOnTermination": "true",
        "spark.kubernetes.executor.securityContext.allowPrivilegeEscalation": _bool_text(
            bool(security.get("allowPrivilegeEscalation", False))
        ),
        "spark.executor.cores": str(_count(job_conf, "spark.executor.cores", defaults.cores, 1)),
        "spark.executor.memory": _size(job_conf, "spark.executor.memory", None) or defaults.memory,
    }
    if settings.service_account:
        conf["spark.kubernetes.authenticate.executor.serviceAccountName"] = settings.service_account
    overhead = _size(job_conf, "spark.executor.memoryOverhead", defaults.memory_overhead)
    if overhead is not None:
        conf["spark.executor.memoryOverhead"] = overhead
    conf.update(_instances(settings, job_conf))
    decommission = defaults.decommission
    if pool is not None and pool.decommission is not None:
        decommission = pool.decommission
    if decommission:
        conf.update({key: job_conf.get(key, "true") for key in _DECOMMISSION_KEYS})
    scratch = effective_scratch(settings, pool_name)
    if scratch.type == "pvc":
        conf[f"{_PVC}.options.claimName"] = "OnDemand"
        conf[f"{_PVC}.options.sizeLimit"] = scratch.size or ""
        if scratch.storage_class:
            conf[f"{_PVC}.options.storageClass"] = scratch.storage_class
        conf[f"{_PVC}.mount.path"] = scratch.mount_path
        conf[f"{_PVC}.mount.readOnly"] = "false"
        all_labels = {INSTALLATION_LABEL: settings.installation, **(labels or {})}
        conf.update({f"{_PVC}.label.{key}": value for key, value in all_labels.items()})
    return conf


def _instances(settings: KubernetesSettings, job_conf: Mapping[str, str]) -> dict[str, str]:
    """The executor count: static (instances) or dynamic (min, initial, max), within the cap."""
    cap = settings.executor.max_instances
    dynamic = _flag(job_conf, f"{_DA}.enabled", settings.executor.dynamic_allocation)
    instances = _count(job_conf, "spark.executor.instances", None, 0 if dynamic else 1)
    over = f"is over cluster {settings.name!r}'s cap of {cap} executors (executor.max_instances)"
    if instances is not None and instances > cap:
        raise JobChoiceError(f"spark.executor.instances={instances} {over}")
    if not dynamic:
        count = instances if instances is not None else settings.executor.instances
        return {f"{_DA}.enabled": "false", "spark.executor.instances": str(count)}
    low = _count(job_conf, f"{_DA}.minExecutors", 0, 0) or 0
    high = _count(job_conf, f"{_DA}.maxExecutors", cap, 1) or cap
    # Spark's own rule: start with the most of minExecutors, initialExecutors and instances.
    start = max(low, _count(job_conf, f"{_DA}.initialExecutors", low, 0) or 0, instances or 0)
    for key, value in (("minExecutors", low), ("maxExecutors", high), ("initialExecutors", start)):
        if value > cap:
            raise JobChoiceError(f"{_DA}.{key}={value} {over}")
    if low > high or start > high:
        raise JobChoiceError(f"{_DA}: minExecutors and initialExecutors must not pass maxExecutors")
    return {
        f"{_DA}.enabled": "true",
        # Kubernetes has no external shuffle service: Spark tracks shuffle files instead.
        f"{_DA}.shuffleTracking.enabled": job_conf.get(f"{_DA}.shuffleTracking.enabled", "true"),
        f"{_DA}.minExecutors": str(low),
        f"{_DA}.maxExecutors": str(high),
        f"{_DA}.initialExecutors": str(start),
    }


def min_executors(conf: Mapping[str, str]) -> int:
    """The gang minimum of a job's final conf: its instances, or minExecutors when dynamic."""
    if _flag(conf, f"{_DA}.enabled", False):
        return _count(conf, f"{_DA}.minExecutors", 0, 0) or 0
    return _count(conf, "spark.executor.instances", 2, 0) or 0  # Spark's default: 2


def executor_demand(settings: KubernetesSettings, conf: Mapping[str, str]) -> ExecutorDemand:
    """What the gang minimum of a job's final conf (`job_conf` with `executor_conf` over it)
    asks of the nodes, by Spark's own sizing of an executor pod (BasicExecutorFeatureStep)."""
    defaults = settings.executor
    if "spark.kubernetes.executor.request.cores" in conf:
        try:
            cores = parse_quantity(conf["spark.kubernetes.executor.request.cores"])
        except ValueError as exc:
            raise JobChoiceError(f"spark.kubernetes.executor.request.cores: {exc}") from None
        if cores <= 0:
            raise JobChoiceError("spark.kubernetes.executor.request.cores must be positive")
        millicores = math.ceil(cores * 1000)
    else:
        millicores = 1000 * (_count(conf, "spark.executor.cores", defaults.cores, 1) or 1)
    memory = parse_memory_mib(_size(conf, "spark.executor.memory", defaults.memory) or "1g")
    overhead_text = _size(conf, "spark.executor.memoryOverhead", defaults.memory_overhead)
    if overhead_text is not None:
        overhead = parse_memory_mib(overhead_text)
    else:
        factor = _factor(conf)
        least = parse_memory_mib(_size(conf, "spark.executor.minMemoryOverhead", "384m") or "1")
        overhead = max(int(factor * memory), least)
    total = memory + overhead
    if _flag(conf, "spark.memory.offHeap.enabled", False):
        total += _bytes(conf.get("spark.memory.offHeap.size", "0")) // 2**20
    pyspark = _size(conf, "spark.executor.pyspark.memory", None)
    if pyspark and conf.get("spark.kubernetes.resource.type") == "python":  # Spark's rule
        total += parse_memory_mib(pyspark)
    return ExecutorDemand(min_executors(conf), millicores, total * 2**20)


def _factor(conf: Mapping[str, str]) -> float:
    key = "spark.executor.memoryOverheadFactor"
    key = key if key in conf else "spark.kubernetes.memoryOverheadFactor"
    try:
        factor = float(conf.get(key, "0.1"))
    except ValueError:
        raise JobChoiceError(f"{key} must be a number, not {conf[key]!r}") from None
    if not 0 <= factor < 100:
        raise JobChoiceError(f"{key} must be a non-negative fraction, not {factor}")
    return factor


def _bool_text(value: bool) -> str:
    return "true" if value else "false"


def _flag(conf: Mapping[str, str], key: str, default: bool) -> bool:
    text = conf.get(key)
    if text is None:
        return default
    if text.strip().lower() not in ("true", "false"):
        raise JobChoiceError(f"{key} must be true or false, not {text!r}")
    return text.strip().lower() == "true"


def _count(conf: Mapping[str, str], key: str, default: int | None, least: int) -> int | None:
    text = conf.get(key)
    if text is None:
        return default
    try:
        number = int(text.strip())
    except ValueError:
        raise JobChoiceError(f"{key} must be a whole number, not {text!r}") from None
    if number < least:
        raise JobChoiceError(f"{key} must be at least {least}, not {number}")
    return number


def _size(conf: Mapping[str, str], key: str, default: str | None) -> str | None:
    """A Spark size (512m, 2g; a bare number is MiB) from the conf, as Spark writes it."""
    text = conf.get(key)
    if text is None:
        return default
    try:
        return format_memory(parse_memory_mib(text))
    except ValueError as exc:
        raise JobChoiceError(f"{key}: {exc}") from None


def _bytes(text: str) -> int:
    """spark.memory.offHeap.size: a bare number is bytes there."""
    stripped = text.strip()
    if stripped.isdigit():
        return int(stripped)
    try:
        return parse_memory_mib(stripped) * 2**20
    except ValueError as exc:
        raise JobChoiceError(f"spark.memory.offHeap.size: {exc}") from None
