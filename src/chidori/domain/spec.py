"""The job spec users submit, validated and normalised (Pydantic)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from chidori.domain.environments import (
    MAX_REQUIREMENTS,
    REQUIREMENTS_CONF,
    check_requirement,
    requirements_from_conf,
)
from chidori.domain.units import format_memory, parse_duration_seconds, parse_memory_mib

# Schemes Spark itself can fetch from; Chidori passes these through untouched.
REMOTE_SCHEMES = frozenset(
    {"hdfs", "s3", "s3a", "s3n", "gs", "abfs", "abfss", "wasb", "wasbs", "http", "https", "local"}
)

_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")
_LABEL_KEY_RE = re.compile(r"^[A-Za-z0-9_.\-/]{1,63}$")
_CONF_KEY_RE = re.compile(r"^[A-Za-z0-9_.\-\[\]]{1,256}$")


def _memory(value: object) -> str:
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise ValueError("must be a size such as 512m or 2g")
    mib = parse_memory_mib(value)
    if mib > MAX_MEMORY_MIB:
        raise ValueError("at most 1t (1024g) per process")
    return format_memory(mib)


def _conf_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise ValueError("conf values must be strings, numbers or booleans")


SESSION_APPLICATION = "chidori:session"  # the built-in driver of kind "session" jobs
CONNECT_APPLICATION = "chidori:connect"  # the built-in driver of kind "connect" jobs


class JobKind(StrEnum):
    """What a job runs: a Spark application (spark-submit), a plain Python program, a
    Livy interactive session (Chidori's own session driver), or a Spark Connect server
    (Chidori's own Connect driver, reached through the Connect front door)."""

    SPARK = "spark"
    PYTHON = "python"
    SESSION = "session"
    CONNECT = "connect"


BUILT_IN_APPLICATIONS = {
    JobKind.SESSION: SESSION_APPLICATION,
    JobKind.CONNECT: CONNECT_APPLICATION,
}


MAX_MEMORY_MIB = 1024 * 1024  # 1 TiB: with at most 2,000 executors, totals fit in 32 bits
Memory = Annotated[str, BeforeValidator(_memory)]
Identifier = Annotated[str, Field(pattern=_NAME_RE.pattern)]


STORED = {"stored": True}  # validation context of specs read back from the store


def _from_input(info: ValidationInfo) -> bool:
    """Whether a spec is being validated as it arrives (not read back from the store).

    Checks added after jobs were stored (NUL bytes, commas in paths) apply to input only: a
    job accepted before them still loads, is shown, and fails its attempt with a reason."""
    return not (info.context or {}).get("stored")


def _one_path(value: str, info: ValidationInfo) -> str:
    # spark-submit joins these lists with commas (and Spark splits them again): a comma in
    # one entry would smuggle in another that no check saw.
    if "," in value and _from_input(info):
        raise ValueError("one file per entry: a comma would split it into several for Spark")
    return value


PathList = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=4096), AfterValidator(_one_path)]],
    Field(max_length=256),
]


def _nul_at(value: object, where: str) -> str | None:
    """Where a NUL byte hides in a field's value (strings, lists, mapping keys and values)."""
    if isinstance(value, str):
        return where if "\x00" in value else None
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            if found := _nul_at(item, f"{where}[{index}]"):
                return found
    if isinstance(value, dict):
        for key, item in value.items():
            if found := _nul_at(key, f"{where} key {key!r}") or _nul_at(item, f"{where}.{key}"):
                return found
    return None


class JobSpec(BaseModel):
    """What to run and with what resources. Unknown fields are refused, not ignored."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    name: str | None = Field(None, min_length=1, max_length=200)
    # "session": a Livy interactive session, whose driver Chidori provides (SESSION_APPLICATION).
    kind: JobKind = JobKind.SPARK
    application: str = Field(min_length=1, max_length=4096)
    main_class: str | None = Field(None, min_length=1, max_length=512)
    args: list[Annotated[str, Field(max_length=65536)]] = Field(
        default_factory=list, max_length=4096
    )
    conf: dict[str, Annotated[str, BeforeValidator(_conf_value)]] = Field(default_factory=dict)
    driver_memory: Memory = "1g"
    driver_cores: int = Field(1, ge=1, le=256)
    executor_instances: int = Field(0, ge=0, le=2000)
    executor_memory: Memory = "1g"
    executor_cores: int = Field(1, ge=1, le=256)
    py_files: PathList = Field(default_factory=list)
    jars: PathList = Field(default_factory=list)
    files: PathList = Field(default_factory=list)
    archives: PathList = Field(default_factory=list)
    cluster: Identifier = "local"
    queue: Identifier = "default"
    priority: int = Field(0, ge=-1000, le=1000)
    schema_name: str | None = Field(None, alias="schema", min_length=1, max_length=256)
    table_name: str | None = Field(None, alias="table", min_length=1, max_length=256)
    labels: dict[str, Annotated[str, Field(max_length=256)]] = Field(default_factory=dict)
    max_retries: int = Field(0, ge=0, le=20)
    rerun_lost: bool = Field(
        True,
        description="Run the job again when its driver's host is lost (the driver may have "
        "finished unrecorded). false: such a job ends FAILED instead, for work that must not "
        "run twice.",
    )
    timeout: float | None = Field(None, description="Seconds, or a duration such as 30m or 2h.")
    requirements: list[Annotated[str, AfterValidator(check_requirement)]] = Field(
        default_factory=list,
        max_length=MAX_REQUIREMENTS,
        description="Python packages the job needs (PEP 508 strings, e.g. 'tabulate>=0.9'), "
        "resolved and installed into a cached environment before the job is admitted "
        "(docs/environments.md). pyspark and py4j stay the server's.",
    )
    environment: Identifier | None = Field(
        None,
        description="A base environment an admin keeps (GET /api/v1/environments/base): the "
        "job starts from its packages, plus its own requirements if any.",
    )

    @model_validator(mode="before")
    @classmethod
    def _requirements_in_conf(cls, data: Any) -> Any:
        # Clients that can send only Spark conf (Livy, Spark REST, --conf) name requirements
        # there; they become the field, never Spark conf.
        conf = data.get("conf") if isinstance(data, dict) else None
        if not isinstance(conf, dict) or REQUIREMENTS_CONF not in conf:
            return data
        conf = dict(conf)
        try:
            named = requirements_from_conf(conf.pop(REQUIREMENTS_CONF))
        except ValueError:
            return data  # left in conf, whose check names the field and the reason
        return {**data, "conf": conf, "requirements": [*(data.get("requirements") or []), *named]}

    @field_validator("*")
    @classmethod
    def _no_nul(cls, value: Any, info: ValidationInfo) -> Any:
        # No process argument, environment entry or path may carry one: the OS refuses them
        # when the driver starts, so they are refused here, where the caller can be told.
        if _from_input(info) and (where := _nul_at(value, str(info.field_name))):
            raise ValueError(f"contains a NUL byte (\\u0000) at {where}")
        return value

    @field_validator("timeout", mode="before")
    @classmethod
    def _timeout(cls, value: object) -> float | None:
        if value is None:
            return None
        if isinstance(value, str | int | float):
            return parse_duration_seconds(value)
        raise ValueError("must be a duration such as 90s, 30m or 2h")

    @field_validator("conf")
    @classmethod
    def _conf_keys(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > 1000:
            raise ValueError("at most 1000 conf entries")
        if REQUIREMENTS_CONF in value:
            requirements_from_conf(value[REQUIREMENTS_CONF])  # raises: why it was not taken
        for key in value:
            if not _CONF_KEY_RE.match(key):
                raise ValueError(f"{key!r} is not a valid conf key")
        return value

    @field_validator("labels")
    @classmethod
    def _label_keys(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > 64:
            raise ValueError("at most 64 labels")
        for key in value:
            if not _LABEL_KEY_RE.match(key):
                raise ValueError(f"{key!r} is not a valid label key (letters, digits, _ . - /)")
        return value

    @field_validator("application")
    @classmethod
    def _session_application(cls, value: str, info: ValidationInfo) -> str:
        # Sessions and Connect servers run Chidori's own drivers: no other application, nor
        # those elsewhere.
        for kind, built_in in BUILT_IN_APPLICATIONS.items():
            if (info.data.get("kind") == kind) != (value == built_in):
                raise ValueError(f"kind {kind.value!r} (and only it) runs {built_in!r}")
        return value

    @field_validator("main_class", "jars", "archives", "conf")
    @classmethod
    def _spark_only(cls, value: object, info: ValidationInfo) -> object:
        if value and info.data.get("kind") == JobKind.PYTHON:
            raise ValueError("applies to Spark jobs only, not to kind 'python'")
        return value

    @classmethod
    def from_stored(cls, data: object) -> JobSpec:
        """A spec as the store keeps it (validated when it arrived)."""
        return cls.model_validate(data, context=STORED)

    @classmethod
    def retries_of(cls, stored: Mapping[str, Any]) -> tuple[int, bool]:
        """(max_retries, rerun_lost) of a stored spec, read without validating all of it again:
        the store needs only these when an attempt ends, once per job."""
        fields = cls.model_fields
        return (
            int(stored.get("max_retries", fields["max_retries"].default)),
            bool(stored.get("rerun_lost", fields["rerun_lost"].default)),
        )

    @property
    def needs_environment(self) -> bool:
        """Whether the job runs in a Python environment of its own (prepared before it is
        admitted)."""
        return bool(self.requirements) or self.environment is not None

    @property
    def display_name(self) -> str:
        if self.name:
            return self.name
        return self.main_class or self.application.rsplit("/", 1)[-1]

    def stored_dict(self) -> dict[str, Any]:
        """The spec as the store keeps it: field names as users write them, secrets included
        (what a job gets). What people see is `chidori.web.job_views.public_spec`, redacted."""
        stored = self.model_dump(by_alias=True, mode="json")
        # Specs stored before these fields existed keep their fingerprint (idempotent retries).
        if not self.requirements:
            del stored["requirements"]
        if self.environment is None:
            del stored["environment"]
        return stored


def fingerprint_of(public: dict[str, Any]) -> str:
    """A stable hash of a spec's `stored_dict()`, used to tell an idempotent retry from a
    different job."""
    canonical = json.dumps(public, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
