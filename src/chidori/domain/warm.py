"""Which jobs a warm driver can run: pure rules, no I/O.

A warm driver's JVM and SparkSession were started before the job existed, so everything Spark
fixes at start (driver size, executors, class path, static conf) is the pool's. A job runs on
one only if it asks for nothing different; anything else starts cold, and the job says why.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from chidori.domain.admission import Resources, job_demand
from chidori.domain.spec import JobKind, JobSpec
from chidori.domain.units import parse_memory_mib


@dataclass(frozen=True)
class WarmPoolConfig:
    """Drivers a server keeps started ahead of jobs for one cluster: how many, and the shape
    fixed at their JVM's start (a job with another shape, or conf only settable at start,
    runs cold). An admin can change `size` at run time."""

    size: int = 0
    driver_memory: str = "1g"
    driver_cores: int = 1
    conf: Mapping[str, str] = field(default_factory=dict)


# SQL conf Spark only reads when the session starts (StaticSQLConf); every other spark.sql.*
# key can be set on a running session.
STATIC_SQL_CONF = frozenset(
    {
        "spark.sql.warehouse.dir",
        "spark.sql.catalogImplementation",
        "spark.sql.extensions",
        "spark.sql.globalTempDatabase",
        "spark.sql.sources.schemaStringLengthThreshold",
        "spark.sql.filesourceTableRelationCacheSize",
        "spark.sql.codegen.cache.maxEntries",
        "spark.sql.codegen.comments",
        "spark.sql.debug",
        "spark.sql.hive.thriftServer.singleSession",
        "spark.sql.ui.retainedExecutions",
        "spark.sql.broadcastExchange.maxThreadThreshold",
        "spark.sql.subquery.maxThreadThreshold",
        "spark.sql.resultQueryStage.maxThreadThreshold",
        "spark.sql.event.truncate.length",
        "spark.sql.legacy.sessionInitWithConfigDefaults",
        "spark.sql.queryExecutionListeners",
        "spark.sql.streaming.streamingQueryListeners",
        "spark.sql.streaming.ui.enabled",
        "spark.sql.streaming.ui.retainedProgressUpdates",
        "spark.sql.streaming.ui.retainedQueries",
        "spark.sql.metadataCacheTTLSeconds",
        "spark.sql.sources.disabledJdbcConnProviderList",
        "spark.sql.defaultUrlStreamHandlerFactory.enabled",
        "spark.sql.catalog.spark_catalog",
        "spark.sql.hive.metastore.version",
        "spark.sql.hive.metastore.jars",
        "spark.sql.hive.metastore.jars.path",
        "spark.sql.hive.metastore.sharedPrefixes",
        "spark.sql.hive.metastore.barrierPrefixes",
    }
)
# Chidori's own keys never reach Spark's behaviour; the app name is shown by Chidori.
_IGNORED_CONF = frozenset({"spark.app.name"})
# In a warm pool's fixed conf: its drivers start with no executors and ask for the job's at
# hand-over (Kubernetes: an idle warm driver holds no executor pods). The executors' size is
# still fixed at start.
EXECUTORS_AT_HANDOVER = "spark.chidori.warm.executorsAtHandover"


def runtime_settable(key: str) -> bool:
    """Whether Spark lets a running session change `key` (spark.conf.set)."""
    return (
        key.startswith("spark.sql.")
        and key not in STATIC_SQL_CONF
        and not key.startswith("spark.sql.hive.metastore.")
        and not key.startswith("spark.sql.streaming.ui.")
    )


def warm_demand(pool: WarmPoolConfig) -> Resources:
    """What a warm driver holds: a driver of the pool's size, no executors (local mode runs
    tasks in the driver; on a standalone master executors are asked for by the job)."""
    return job_demand(parse_memory_mib(pool.driver_memory), pool.driver_cores, 0, 0, 0)


def cold_reason(spec: JobSpec, pool: WarmPoolConfig, fixed_conf: Mapping[str, str]) -> str | None:
    """Why `spec` cannot run on a warm driver of `pool` (None: it can). `fixed_conf` is the
    conf the pool's drivers were started with (cluster conf, Chidori's defaults, the pool's)."""
    if spec.kind is not JobKind.SPARK:
        return f"kind {spec.kind!r} jobs start their own process"
    if spec.main_class or not spec.application.endswith(".py"):
        return "JVM applications start cold (the warm pool holds PySpark drivers)"
    if spec.jars or spec.archives:
        return "--jars and --archives are fixed when the driver's JVM starts"
    if spec.needs_environment:
        # A warm driver's Python started without the job's environment on its path.
        return "jobs with requirements start in their own Python environment"
    if parse_memory_mib(spec.driver_memory) != parse_memory_mib(pool.driver_memory):
        return (
            f"driver memory {spec.driver_memory} differs from the warm pool's {pool.driver_memory}"
        )
    if spec.driver_cores != pool.driver_cores:
        return f"driver cores {spec.driver_cores} differ from the warm pool's {pool.driver_cores}"
    if fixed_conf.get(EXECUTORS_AT_HANDOVER) == "true":
        reason = _executor_shape_differs(spec, fixed_conf)
        if reason is not None:
            return reason
    elif spec.executor_instances:
        return "executors are asked for when the driver starts"
    for key, value in spec.conf.items():
        if key in _IGNORED_CONF or fixed_conf.get(key) == value or runtime_settable(key):
            continue
        return f"{key} is fixed when the driver starts (the warm pool's is {fixed_conf.get(key)!r})"
    return None


def _executor_shape_differs(spec: JobSpec, fixed_conf: Mapping[str, str]) -> str | None:
    memory = fixed_conf.get("spark.executor.memory", "1g")
    if parse_memory_mib(spec.executor_memory) != parse_memory_mib(memory):
        return f"executor memory {spec.executor_memory} differs from the warm pool's {memory}"
    cores = fixed_conf.get("spark.executor.cores", "1")
    if str(spec.executor_cores) != cores:
        return f"executor cores {spec.executor_cores} differ from the warm pool's {cores}"
    return None
