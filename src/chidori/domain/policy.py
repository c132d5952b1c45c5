"""What a job may ask for: an admin-set policy, checked at submission, on top of rules no
policy loosens (conf that sizes the job or names its files, and conf that loads code)."""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from chidori.domain.errors import FieldError, Forbidden, InvalidRequest
from chidori.domain.identity import Principal
from chidori.domain.spec import REMOTE_SCHEMES, JobSpec, Memory
from chidori.domain.units import parse_memory_mib

# Environment variables that make a process load code, options or an identity of the job's
# choosing (a preloaded library, JVM agents, Python paths, Spark's and Hadoop's own settings).
_CODE_LOADING_ENV = (
    "LD_*", "DYLD_*", "JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS", "JDK_JAVA_OPTIONS", "JAVA_OPTS",
    "JAVA_HOME", "CLASSPATH", "PATH", "BASH_ENV", "ENV", "PYTHONPATH", "PYTHONSTARTUP",
    "PYTHONHOME", "PYTHONUSERBASE", "PYSPARK_*", "SPARK_*", "HADOOP_*", "KRB5*",
)  # fmt: skip
# The conf prefixes that set a variable in the environment of a driver or an executor.
_ENV_PREFIXES = (
    "spark.executorEnv.",
    "spark.driverEnv.",
    "spark.yarn.appMasterEnv.",
    "spark.kubernetes.driverEnv.",
)
# Refused to everyone but (exempt) admins, whatever the admin's policy says: these run code or
# use credentials from outside the job's application, or choose where its driver runs.
BUILTIN_FORBIDDEN_CONF = (
    "spark.driver.extraJavaOptions",
    "spark.executor.extraJavaOptions",
    "spark.driver.defaultJavaOptions",
    "spark.executor.defaultJavaOptions",
    "spark.driver.extraClassPath",
    "spark.executor.extraClassPath",
    "spark.driver.extraLibraryPath",
    "spark.executor.extraLibraryPath",
    "spark.driver.userClassPathFirst",
    "spark.executor.userClassPathFirst",
    "spark.files.userClassPathFirst",  # Spark's old name of spark.executor.userClassPathFirst
    "spark.yarn.am.extra*",
    "spark.driver.resource.*.discoveryScript",
    "spark.executor.resource.*.discoveryScript",
    # Where spark.jars.packages comes from: Maven Central unless the cluster's conf says else.
    "spark.jars.repositories",
    "spark.jars.ivy",
    "spark.jars.ivySettings",
    "spark.kubernetes.*authenticate*",
    "spark.master",
    "spark.submit.deployMode",
    "spark.pyspark.python",
    "spark.pyspark.driver.python",
    *(prefix + name for prefix in _ENV_PREFIXES for name in _CODE_LOADING_ENV),
)
# The admin's list starts with these (and may add to them); only the last can be loosened.
DEFAULT_FORBIDDEN_CONF = (*BUILTIN_FORBIDDEN_CONF, "spark.eventLog.dir")

# Conf that would size the job behind the caps' and admission's back: refused to everyone,
# naming what to set instead (the spec's fields, which both read).
_SIZE_CONF = {
    "spark.driver.memory": "driver_memory",
    "spark.driver.cores": "driver_cores",
    "spark.executor.memory": "executor_memory",
    "spark.executor.cores": "executor_cores",
    "spark.executor.instances": "executor_instances",
    "spark.cores.max": "executor_instances and executor_cores",
    "spark.kubernetes.driver.request.cores": "driver_cores",
    "spark.kubernetes.driver.limit.cores": "driver_cores",
    "spark.kubernetes.executor.request.cores": "executor_cores",
    "spark.kubernetes.executor.limit.cores": "executor_cores",
}
# Dynamic allocation grows a job past the gang admission reserved.
_SIZE_PATTERNS = {"spark.dynamicAllocation.*": "executor_instances"}
# Conf naming files, which the spec's lists check against the app roots: refused to everyone.
_FILE_CONF = {
    "spark.jars": "jars",
    "spark.files": "files",
    "spark.submit.pyFiles": "py_files",
    "spark.archives": "archives",
    "spark.yarn.dist.jars": "jars",
    "spark.yarn.dist.files": "files",
    "spark.yarn.dist.pyFiles": "py_files",
    "spark.yarn.dist.archives": "archives",
}
_FILE_PATTERNS = {"spark.yarn.dist.*": "jars, files, py_files or archives"}

# Memory Spark asks for per executor beyond spark.executor.memory. No spec field sets these:
# only exempt admins may, and admission counts what they set (`executor_extra_mib`).
MIN_OVERHEAD_MIB = 384  # Spark's defaults: max(384 MiB, 10 % of the executor's memory)
OVERHEAD_FACTOR = 0.1
_OVERHEAD = ("spark.executor.memoryOverhead", "spark.yarn.executor.memoryOverhead")
_OVERHEAD_FACTOR = ("spark.executor.memoryOverheadFactor", "spark.kubernetes.memoryOverheadFactor")
_MIN_OVERHEAD = "spark.executor.minMemoryOverhead"
_PYSPARK_MEMORY = "spark.executor.pyspark.memory"
_OFF_HEAP_SIZE, _OFF_HEAP_ENABLED = "spark.memory.offHeap.size", "spark.memory.offHeap.enabled"
# The driver's counterparts: drivers run in client mode, where Spark adds nothing to them.
_DRIVER_EXTRA = (
    "spark.driver.memoryOverhead",
    "spark.yarn.driver.memoryOverhead",
    "spark.driver.memoryOverheadFactor",
    "spark.driver.minMemoryOverhead",
)
EXTRA_MEMORY_CONF = (
    *_OVERHEAD, *_OVERHEAD_FACTOR, _MIN_OVERHEAD, _PYSPARK_MEMORY, _OFF_HEAP_SIZE, *_DRIVER_EXTRA,
)  # fmt: skip
_FACTORS = {key.lower() for key in (*_OVERHEAD_FACTOR, "spark.driver.memoryOverheadFactor")}
_SPARK_KINDS = ("spark", "session", "connect")  # kinds whose executors are JVMs sized by Spark


class PolicyDoc(BaseModel):
    """The policy as an admin writes it (`PUT /api/v1/admin/policy`). `null` = no cap."""

    model_config = ConfigDict(extra="forbid")

    max_driver_memory: Memory | None = None
    max_driver_cores: int | None = Field(None, ge=1)
    max_executor_memory: Memory | None = None
    max_executor_cores: int | None = Field(None, ge=1)
    max_executor_instances: int | None = Field(None, ge=0)
    forbidden_conf: list[str] = Field(
        default_factory=lambda: list(DEFAULT_FORBIDDEN_CONF),
        description="Conf keys users may not set; shell-style patterns, case-insensitive. "
        "Chidori's built-in list (code loaders, cluster credentials) applies even if removed.",
    )
    allowed_schemes: list[str] = Field(
        default_factory=lambda: sorted(REMOTE_SCHEMES),
        description="URL schemes applications and files may come from (besides paths under "
        "the app roots and uploads).",
    )
    admins_exempt: bool = Field(
        True, description="Admins are not held to the size caps and forbidden conf keys."
    )


def _reference_scheme(reference: str) -> str:
    if "://" in reference or reference.startswith("local:"):
        return urlsplit(reference).scheme.lower()
    return ""


def _matches(key: str, patterns: Mapping[str, str]) -> str | None:
    lowered = key.lower()
    return next((v for p, v in patterns.items() if fnmatch.fnmatchcase(lowered, p.lower())), None)


def _lowered(mapping: Mapping[str, str]) -> dict[str, str]:
    return {key.lower(): value for key, value in mapping.items()}


_SIZE_KEYS, _FILE_KEYS = _lowered(_SIZE_CONF), _lowered(_FILE_CONF)
_BUILTIN_PATTERNS = [p.lower() for p in BUILTIN_FORBIDDEN_CONF]
_EXTRA_KEYS = {key.lower() for key in EXTRA_MEMORY_CONF}


def conf_rule_errors(conf: Mapping[str, str]) -> list[FieldError]:
    """Conf keys no one may set (admins included; matched without regard to case): the ones
    the spec's fields set instead, so that caps, admission and the app roots see them."""
    errors = []
    for key in conf:
        lowered = key.lower()
        size = _SIZE_KEYS.get(lowered) or _matches(key, _SIZE_PATTERNS)
        files = _FILE_KEYS.get(lowered) or _matches(key, _FILE_PATTERNS)
        if size is not None:
            reason = "sizes the job behind admission's back"
            errors.append(FieldError(f"conf.{key}", f"set {size} instead ({reason})"))
        elif files is not None:
            reason = "its entries are checked against the app roots"
            errors.append(FieldError(f"conf.{key}", f"set {files} instead ({reason})"))
    return errors


def _forbidden_errors(conf: Mapping[str, str], policy: PolicyDoc) -> list[FieldError]:
    errors = []
    patterns = [p.lower() for p in policy.forbidden_conf]
    for key in conf:
        lowered = key.lower()
        if any(fnmatch.fnmatchcase(lowered, p) for p in _BUILTIN_PATTERNS):
            message = "may not be set: it loads code, options or credentials from outside the job"
        elif lowered in _EXTRA_KEYS:
            message = (
                "may not be set: memory beyond executor_memory is Chidori's to size (admission "
                f"counts Spark's default overhead, max({MIN_OVERHEAD_MIB}m, 10 %))"
            )
        elif any(fnmatch.fnmatchcase(lowered, p) for p in patterns):
            message = "may not be set: forbidden by policy"
        else:
            continue
        errors.append(FieldError(f"conf.{key}", message))
    return errors


def _conf_mib(conf: Mapping[str, str], key: str) -> int | None:
    """A size from conf in MiB (None: unset). A bare number is MiB, as Spark reads these keys,
    except spark.memory.offHeap.size, which Spark reads in bytes. ValueError if not a size."""
    value = conf.get(key)
    if value is None:
        return None
    if key == _OFF_HEAP_SIZE and value.strip().isdigit():
        return math.ceil(int(value) / (1024 * 1024))
    return parse_memory_mib(value)


def _conf_factor(conf: Mapping[str, str], key: str) -> float | None:
    value = conf.get(key)
    if value is None:
        return None
    factor = float(value)  # ValueError for text
    if not math.isfinite(factor) or not 0 < factor <= 10:
        raise ValueError(f"{value!r} is not a factor between 0 and 10")
    return factor


def extra_memory_errors(conf: Mapping[str, str]) -> list[FieldError]:
    """Each extra-memory key set (exactly as Spark spells it) to something not a size."""
    errors = []
    for key in EXTRA_MEMORY_CONF:
        try:
            if key.lower() in _FACTORS:
                _conf_factor(conf, key)
            else:
                _conf_mib(conf, key)
        except ValueError as exc:
            errors.append(FieldError(f"conf.{key}", str(exc)))
    return errors


def executor_extra_mib(spec: JobSpec) -> int:
    """The memory Spark asks for per executor beyond `executor_memory`: its overhead (as set,
    or Spark's default max(384 MiB, 10 %)), off-heap memory if enabled, PySpark workers' memory
    if set. 0 for kind "python", whose "executors" are no JVMs. A value that is not a size
    counts as unset (the policy refuses it at submission)."""
    if spec.kind not in _SPARK_KINDS:
        return 0
    conf = spec.conf

    def size(key: str) -> int:
        try:
            return _conf_mib(conf, key) or 0
        except ValueError:
            return 0

    try:
        factor = next(
            (f for key in _OVERHEAD_FACTOR if (f := _conf_factor(conf, key)) is not None),
            OVERHEAD_FACTOR,
        )
    except ValueError:
        factor = OVERHEAD_FACTOR
    explicit = next((m for key in _OVERHEAD if (m := size(key))), 0)
    minimum = size(_MIN_OVERHEAD) or MIN_OVERHEAD_MIB
    heap = parse_memory_mib(spec.executor_memory)
    overhead = explicit or max(minimum, int(factor * heap))
    off_heap = size(_OFF_HEAP_SIZE) if conf.get(_OFF_HEAP_ENABLED, "").lower() == "true" else 0
    return overhead + off_heap + size(_PYSPARK_MEMORY)


# What the store can record of one job's memory (a 32-bit column, in MiB).
MAX_DEMAND_MIB = 2**31 - 1


def _demand_errors(spec: JobSpec) -> list[FieldError]:
    executor = parse_memory_mib(spec.executor_memory) + executor_extra_mib(spec)
    total = parse_memory_mib(spec.driver_memory) + spec.executor_instances * executor
    if total <= MAX_DEMAND_MIB:
        return []
    return [FieldError("demand", f"{total}m in all (executors with their overhead) is too much")]


def _cap_errors(policy: PolicyDoc, spec: JobSpec) -> list[FieldError]:
    errors = []
    for field, cap in (
        ("driver_memory", policy.max_driver_memory),
        ("executor_memory", policy.max_executor_memory),
    ):
        if cap is not None and parse_memory_mib(getattr(spec, field)) > parse_memory_mib(cap):
            errors.append(FieldError(field, f"at most {cap} allowed by policy"))
    for field, number_cap in (
        ("driver_cores", policy.max_driver_cores),
        ("executor_cores", policy.max_executor_cores),
        ("executor_instances", policy.max_executor_instances),
    ):
        if number_cap is not None and getattr(spec, field) > number_cap:
            errors.append(FieldError(field, f"at most {number_cap} allowed by policy"))
    return errors


def _first_per_field(errors: list[FieldError]) -> list[FieldError]:
    first: dict[str, FieldError] = {}
    for error in errors:
        first.setdefault(error.field, error)
    return list(first.values())


def check_job(policy: PolicyDoc, spec: JobSpec, principal: Principal) -> None:
    """Raise Forbidden (cluster/queue not allowed) or InvalidRequest (each field the policy
    refuses) for a job `principal` wants to submit."""
    if principal.clusters is not None and spec.cluster not in principal.clusters:
        raise Forbidden.for_field(
            "cluster", f"{principal.name!r} may not use cluster {spec.cluster!r}"
        )
    if principal.queues is not None and spec.queue not in principal.queues:
        raise Forbidden.for_field("queue", f"{principal.name!r} may not use queue {spec.queue!r}")
    errors: list[FieldError] = []
    refs = [("application", spec.application)]
    for field in ("py_files", "jars", "files", "archives"):
        refs += [(f"{field}[{i}]", r) for i, r in enumerate(getattr(spec, field))]
    allowed = {s.lower() for s in policy.allowed_schemes} | {"upload", "file"}
    for field, ref in refs:
        scheme = _reference_scheme(ref)
        if scheme and scheme not in allowed:
            errors.append(FieldError(field, f"scheme {scheme!r} is not allowed by policy"))
    errors += conf_rule_errors(spec.conf)
    if principal.is_admin and policy.admins_exempt:
        errors += extra_memory_errors(spec.conf)
    else:
        errors += _forbidden_errors(spec.conf, policy)
        errors += _cap_errors(policy, spec)
    errors += _demand_errors(spec)
    errors = _first_per_field(errors)  # a key both forbidden and refused is named once
    if errors:
        raise InvalidRequest("; ".join(f"{e.field}: {e.message}" for e in errors), errors)
