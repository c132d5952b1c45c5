"""Spark's standalone REST submission protocol: its messages (`SubmitRestProtocolMessage`s
as Spark's `RestSubmissionServer` sends and reads them), its submission ids, and what a
`CreateSubmissionRequest` stands for as a Chidori job. No HTTP here: the listener is
`spark_rest.py`, its error answers `spark_rest_errors.py`.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from chidori.domain.errors import FieldError, InvalidRequest
from chidori.domain.records import SUBMITTED_THROUGH, Job
from chidori.domain.spec import JobSpec
from chidori.domain.states import JobState

PROTOCOL_VERSION = "v1"
PYTHON_RUNNER = "org.apache.spark.deploy.PythonRunner"
LABEL_VALUE = "spark-rest"  # of the label SUBMITTED_THROUGH, for people (the channel is ours)
CLUSTER_PROPERTY = "spark.chidori.cluster"
QUEUE_PROPERTY = "spark.chidori.queue"
_SUBMISSION_ID = re.compile(r"^driver-(\d{14})-(\d{4,18})$")
_ID_TIME_FORMAT = "%Y%m%d%H%M%S"

# Properties spark-submit always sends in cluster mode that describe Spark's master, not the
# application: Chidori decides where and how the driver runs, so they are dropped rather than
# refused (the policy forbids spark.master and spark.submit.deployMode in a job's conf).
_DROPPED = frozenset(
    {
        "spark.master",
        "spark.submit.deployMode",
        "spark.driver.supervise",
        "spark.app.submitTime",
        "spark.app.id",
    }
)
_DROPPED_PREFIXES = ("spark.master.rest.", "spark.chidori.")
# Properties that become fields of the job spec instead of conf.
_LIST_PROPERTIES = {
    "spark.jars": "jars",
    "spark.submit.pyFiles": "py_files",
    "spark.files": "files",
    "spark.archives": "archives",
}
_SCALAR_PROPERTIES = {
    "spark.app.name": "name",
    "spark.driver.memory": "driver_memory",
    "spark.driver.cores": "driver_cores",
    "spark.executor.memory": "executor_memory",
    "spark.executor.cores": "executor_cores",
    "spark.executor.instances": "executor_instances",
}
# Where a job spec field came from in the request, so errors name what the caller sent.
_ORIGIN = {
    "application": "appResource",
    "main_class": "mainClass",
    "args": "appArgs",
    "conf": "sparkProperties",
    "cluster": f"sparkProperties.{CLUSTER_PROPERTY}",
    "queue": f"sparkProperties.{QUEUE_PROPERTY}",
    **{field: f"sparkProperties.{key}" for key, field in _LIST_PROPERTIES.items()},
    **{field: f"sparkProperties.{key}" for key, field in _SCALAR_PROPERTIES.items()},
}
# Spark's DriverState names for our job states (SUBMITTED, RUNNING, FINISHED, RELAUNCHING,
# UNKNOWN, KILLED, FAILED, ERROR). QUEUED after a lost attempt is RELAUNCHING; a failure without
# an exit code (the driver never ran) is ERROR, as Spark says of a driver it could not launch.
_DRIVER_STATE = {
    JobState.QUEUED: "SUBMITTED",
    JobState.ADMITTED: "RUNNING",
    JobState.RUNNING: "RUNNING",
    JobState.SUCCEEDED: "FINISHED",
    JobState.FAILED: "FAILED",
    JobState.CANCELLED: "KILLED",
}


# ---- messages ---------------------------------------------------------------------------------


class RestError(Exception):
    """An answer that is an ErrorResponse: status, message, and for a version mismatch the
    version we speak (the protocol's own refusals, not domain errors)."""

    def __init__(self, status: int, message: str, highest_version: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.highest_version = highest_version


class CreateSubmissionRequest(BaseModel):
    """Spark's CreateSubmissionRequest. Unknown fields are reported back (`unknownFields`), as
    Spark does, rather than refused."""

    model_config = ConfigDict(extra="allow")

    action: Literal["CreateSubmissionRequest"]
    client_spark_version: str = Field(alias="clientSparkVersion", min_length=1)
    app_resource: str = Field(alias="appResource", min_length=1, max_length=4096)
    main_class: str = Field(alias="mainClass", min_length=1, max_length=512)
    app_args: list[str] = Field(default_factory=list, alias="appArgs", max_length=4096)
    spark_properties: dict[str, str] = Field(alias="sparkProperties")
    environment_variables: dict[str, str] = Field(
        default_factory=dict, alias="environmentVariables"
    )


class SparkRestResponse(BaseModel):
    """What every answer carries; fields left None are omitted, as Spark's JSON omits nulls."""

    action: str
    server_spark_version: str = Field(serialization_alias="serverSparkVersion")
    message: str | None = None
    success: bool | None = None

    def body(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True)


class ErrorResponse(SparkRestResponse):
    action: str = "ErrorResponse"
    highest_protocol_version: str | None = Field(None, serialization_alias="highestProtocolVersion")


class CreateSubmissionResponse(SparkRestResponse):
    action: str = "CreateSubmissionResponse"
    submission_id: str | None = Field(None, serialization_alias="submissionId")
    unknown_fields: list[str] | None = Field(None, serialization_alias="unknownFields")


class SubmissionStatusResponse(SparkRestResponse):
    action: str = "SubmissionStatusResponse"
    submission_id: str = Field(serialization_alias="submissionId")
    driver_state: str | None = Field(None, serialization_alias="driverState")
    worker_id: str | None = Field(None, serialization_alias="workerId")
    worker_host_port: str | None = Field(None, serialization_alias="workerHostPort")


class KillSubmissionResponse(SparkRestResponse):
    action: str = "KillSubmissionResponse"
    submission_id: str = Field(serialization_alias="submissionId")


# ---- submission ids ---------------------------------------------------------------------------


def _utc(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; the store writes UTC.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def submission_stamp(job: Job) -> str:
    """The time part of a job's submission id: when it was created, UTC, YYYYMMDDHHmmss."""
    return _utc(job.created_at).strftime(_ID_TIME_FORMAT)


def submission_id(job: Job) -> str:
    """Spark's driver-id look, `driver-<created, UTC, YYYYMMDDHHmmss>-<job id, 4+ digits>`: the
    time makes an id name one job even if a database is ever reset."""
    return f"driver-{submission_stamp(job)}-{job.id:04d}"


def parse_submission_id(value: str) -> tuple[int, str] | None:
    """(job id, time part) of a submission id, or None if it is not one of ours."""
    match = _SUBMISSION_ID.match(value)
    if match is None:
        return None
    return int(match.group(2)), match.group(1)


# ---- request → job spec -----------------------------------------------------------------------


def _reference(value: str, origin: str) -> str:
    """A Spark `file:` URL (spark-submit sends `file:/path`) as the plain path our path rules
    check; anything else (paths, upload://, hdfs://, local:...) as is."""
    if not value.lower().startswith("file:"):
        return value
    parts = urlsplit(value)
    if parts.netloc not in ("", "localhost"):
        raise InvalidRequest.for_field(origin, f"{value!r} names another host")
    return unquote(parts.path)


def _split(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def spec_from_request(request: CreateSubmissionRequest, default_cluster: str) -> JobSpec:
    """The Chidori job a CreateSubmissionRequest stands for. Raises InvalidRequest naming the
    request's own fields."""
    properties = dict(request.spark_properties)
    fields: dict[str, Any] = {
        "kind": "spark",
        "labels": {SUBMITTED_THROUGH: LABEL_VALUE},
        "cluster": properties.get(CLUSTER_PROPERTY) or default_cluster,
    }
    if properties.get(QUEUE_PROPERTY):
        fields["queue"] = properties[QUEUE_PROPERTY]
    application = _reference(request.app_resource, "appResource")
    if request.main_class == PYTHON_RUNNER:
        # How Spark runs a Python app in cluster mode: the .py first, then the app's args.
        if not request.app_args:
            raise InvalidRequest.for_field(
                "appArgs", f"{PYTHON_RUNNER} needs the Python file as the first of appArgs"
            )
        fields["application"] = _reference(request.app_args[0], "appArgs[0]")
        fields["args"] = request.app_args[1:]
    else:
        fields["application"] = application
        fields["main_class"] = request.main_class
        fields["args"] = request.app_args
    conf: dict[str, str] = {}
    for key, value in properties.items():
        if key in _LIST_PROPERTIES:
            origin = f"sparkProperties.{key}"
            refs = [_reference(item, origin) for item in _split(value)]
            # spark-submit lists the application jar in spark.jars too; the job runs it anyway.
            fields[_LIST_PROPERTIES[key]] = [r for r in refs if r != application]
        elif key in _SCALAR_PROPERTIES:
            fields[_SCALAR_PROPERTIES[key]] = value
        elif key == "spark.cores.max":
            continue  # below: --total-executor-cores becomes executors of executor_cores each
        elif key in _DROPPED or key.startswith(_DROPPED_PREFIXES):
            continue
        else:
            conf[key] = value
    fields["conf"] = conf
    total = properties.get("spark.cores.max", "").strip()
    if total and "executor_instances" not in fields:
        cores = str(fields.get("executor_cores") or "1").strip()
        if not (total.isdigit() and cores.isdigit() and int(cores) > 0):
            raise InvalidRequest.for_field(
                "sparkProperties.spark.cores.max", f"expects a whole number, not {total!r}"
            )
        fields["executor_instances"] = max(1, -(-int(total) // int(cores)))  # ceil
    try:
        return JobSpec.model_validate(fields)
    except ValidationError as exc:
        errors = [
            FieldError(
                _origin(".".join(str(p) for p in error["loc"])),
                str(error["msg"]).removeprefix("Value error, "),
            )
            for error in exc.errors()
        ]
        raise InvalidRequest("; ".join(f"{e.field}: {e.message}" for e in errors), errors) from exc


def _origin(field: str) -> str:
    """A job spec field path (`driver_memory`, `jars[0]`, `conf.spark.x`) as the request named
    it (`sparkProperties.spark.driver.memory`, ...)."""
    head = re.split(r"[.\[]", field, maxsplit=1)[0]
    if head == "conf" and field.startswith("conf."):
        return "sparkProperties." + field.removeprefix("conf.")
    origin = _ORIGIN.get(head)
    return origin + field[len(head) :] if origin else field


def in_request_terms(exc: InvalidRequest) -> InvalidRequest:
    """The same error, naming the request's fields (appResource, sparkProperties.x, ...), as
    the listener answers every InvalidRequest. Errors that already name them are unchanged."""
    if not exc.fields:
        return exc
    fields = [FieldError(_origin(f.field), f.message) for f in exc.fields]
    return InvalidRequest("; ".join(f"{f.field}: {f.message}" for f in fields), fields)


def driver_state(job: Job) -> str:
    """Spark's DriverState for the job (see _DRIVER_STATE)."""
    if job.state is JobState.QUEUED and job.attempts > 0:
        return "RELAUNCHING"
    if job.state is JobState.FAILED and job.exit_code is None:
        return "ERROR"
    return _DRIVER_STATE[job.state]


def _no_constant(name: str) -> object:
    # NaN and Infinity are not JSON (Spark's Jackson refuses them too).
    raise ValueError(f"{name} is not a JSON value")


def parse_create(raw: bytes) -> CreateSubmissionRequest:
    """The request, or a 400 ErrorResponse saying why not (Spark: "Malformed request: ...")."""
    try:
        data = json.loads(raw, parse_constant=_no_constant)
    except RecursionError as exc:
        raise RestError(400, "Malformed request: the body is nested too deeply") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise RestError(400, f"Malformed request: the body is not JSON: {exc}") from exc
    if not isinstance(data, dict) or "action" not in data:
        raise RestError(400, "Malformed request: Action field not found in JSON")
    if data["action"] != "CreateSubmissionRequest":
        raise RestError(
            400,
            f"Malformed request: expected action CreateSubmissionRequest, not "
            f"{str(data['action'])[:100]!r}",
        )
    try:
        return CreateSubmissionRequest.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc'])}: "
            + ("field required" if error["type"] == "missing" else error["msg"])
            for error in exc.errors()
        )
        raise RestError(400, f"Malformed request: {problems}") from exc
