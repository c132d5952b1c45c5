"""What a job may ask for: an admin-set policy, checked at submission."""

from __future__ import annotations

import fnmatch
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from chidori.artifacts import REMOTE_SCHEMES
from chidori.errors import FieldError, Forbidden, InvalidRequest
from chidori.identity import Principal
from chidori.spec import JobSpec, Memory
from chidori.units import parse_memory_mib

DEFAULT_FORBIDDEN_CONF = (
    # Arbitrary JVM flags and class paths: code and agents outside the application.
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
    # Credentials of the cluster itself.
    "spark.kubernetes.*authenticate*",
    # Where and how the driver runs is Chidori's choice (the cluster), not the job's.
    "spark.master",
    "spark.submit.deployMode",
    "spark.pyspark.python",
    "spark.pyspark.driver.python",
    "spark.eventLog.dir",
)


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
        description="Conf keys users may not set; shell-style patterns, case-insensitive.",
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
    if not (principal.is_admin and policy.admins_exempt):
        patterns = [p.lower() for p in policy.forbidden_conf]
        for key in spec.conf:
            if any(fnmatch.fnmatchcase(key.lower(), p) for p in patterns):
                errors.append(FieldError(f"conf.{key}", "may not be set: forbidden by policy"))
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
    if errors:
        raise InvalidRequest("; ".join(f"{e.field}: {e.message}" for e in errors), errors)
