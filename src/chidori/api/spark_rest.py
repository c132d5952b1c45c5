"""Spark's standalone REST submission protocol, on its own listener, so a stock
`spark-submit --master spark://HOST:PORT --deploy-mode cluster --conf
spark.master.rest.enabled=true` submits to Chidori.

Paths, message shapes, status codes and messages follow Spark's `RestSubmissionServer`,
`StandaloneRestServer` and the `SubmitRestProtocol*` messages (checked against a Spark 4.3
master): `POST /v1/submissions/create`, `GET /v1/submissions/status/{id}`, `POST
/v1/submissions/kill/{id}`, `POST .../killall`, `POST .../clear`, `GET .../readyz`. Every answer
carries `action` and `serverSparkVersion` (the client refuses a response without it); errors
answer Spark's `ErrorResponse`. A submission becomes an ordinary Chidori job, labelled
`submitted-through: spark-rest` for people and marked by the server (`Job.channel`, which no
caller can set) for this listener, run by the configured user in client mode on a Chidori
cluster. Status and kill reach only jobs so marked.

The protocol has no authentication of its own, so the listener admits callers by source
network and, if a secret is set, by an HS256 JWS bearer token, as Spark 4's `JWSFilter` does.
It refuses to start open to anyone: it needs allowed networks or a JWS secret, and a run-as
user who is not an admin (admins are exempt from the conf policy) unless a JWS secret
authenticates the callers.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from chidori.config import ConfigError, Settings
from chidori.domain.errors import (
    BackendError,
    ChidoriError,
    FieldError,
    Forbidden,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    StoreUnavailable,
    Unauthenticated,
)
from chidori.domain.records import Attempt, Channel, Job, JobQuery
from chidori.domain.spec import JobSpec
from chidori.domain.states import ACTIVE_JOB_STATES, JobState
from chidori.queues.base import QueueUnavailable
from chidori.services.identity import BOOTSTRAP_ADMIN, Actor, IdentityService
from chidori.services.jobs import JobService

log = logging.getLogger(__name__)

PROTOCOL_VERSION = "v1"
UNKNOWN_PROTOCOL_VERSION = 468  # Spark's own status code for a version it does not speak
PYTHON_RUNNER = "org.apache.spark.deploy.PythonRunner"
LABEL_KEY = "submitted-through"
LABEL_VALUE = "spark-rest"
CLUSTER_PROPERTY = "spark.chidori.cluster"
QUEUE_PROPERTY = "spark.chidori.queue"
ACTIONS = ("create", "kill", "killall", "clear", "status", "readyz")
_SUBMISSION_ID = re.compile(r"^driver-(\d{14})-(\d{4,18})$")
_ID_TIME_FORMAT = "%Y%m%d%H%M%S"
_PATH_HINT = (
    f" Please submit requests through http://[host]:[port]/{PROTOCOL_VERSION}/submissions/..."
)

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

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


# ---- messages ---------------------------------------------------------------------------------


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


def submission_id(job: Job) -> str:
    """Spark's driver-id look, `driver-<created, UTC, YYYYMMDDHHmmss>-<job id, 4+ digits>`: the
    time makes an id name one job even if a database is ever reset."""
    return f"driver-{_utc(job.created_at).strftime(_ID_TIME_FORMAT)}-{job.id:04d}"


def parse_submission_id(value: str) -> tuple[int, str] | None:
    """(job id, time part) of a submission id, or None if it is not one of ours."""
    match = _SUBMISSION_ID.match(value)
    if match is None:
        return None
    return int(match.group(2)), match.group(1)


# ---- JWS (RFC 7515, compact form, HMAC) -------------------------------------------------------

_HMAC_ALGORITHMS = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}
_MIN_KEY_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}


class JwsError(Exception):
    """A bearer token that does not verify (the reason stays in the server log)."""


def _b64url_decode(text: str) -> bytes:
    if not re.fullmatch(r"[A-Za-z0-9_\-]*", text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def jws_key(secret: str) -> bytes:
    """The HMAC key from the configured secret: base64url, as Spark's JWSFilter reads its
    `secretKey` (so one value serves both), and at least 256 bits, as jjwt requires for HS256.
    Raises ConfigError otherwise."""
    try:
        key = _b64url_decode(secret.strip().rstrip("="))
    except (ValueError, binascii.Error) as exc:
        raise ConfigError(
            "CHIDORI_SPARK_REST_JWS_SECRET must be base64url-encoded (as Spark's JWSFilter "
            "secretKey)"
        ) from exc
    if len(key) < _MIN_KEY_BYTES["HS256"]:
        raise ConfigError(
            "CHIDORI_SPARK_REST_JWS_SECRET must decode to at least 32 bytes (256 bits), "
            f"not {len(key)}"
        )
    return key


def verify_jws(token: str, key: bytes, now: float | None = None) -> dict[str, Any]:
    """The claims of a compact JWS signed with `key` by HS256/384/512. Raises JwsError for a
    bad shape, an unsigned or unknown algorithm, a key too short for it, a wrong signature, a
    payload that is not a JSON object, or `exp`/`nbf` outside the current time; the checks
    jjwt's parseSignedClaims makes in Spark's JWSFilter."""
    parts = token.split(".")
    if len(parts) != 3 or not all(parts):
        raise JwsError("a JWS has three non-empty base64url parts")
    try:
        header = json.loads(_b64url_decode(parts[0]))
        payload = _b64url_decode(parts[1])
        signature = _b64url_decode(parts[2])
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise JwsError(f"malformed JWS: {exc}") from exc
    if not isinstance(header, dict):
        raise JwsError("JWS header is not a JSON object")
    algorithm = header.get("alg")
    if algorithm not in _HMAC_ALGORITHMS:
        raise JwsError(f"algorithm {algorithm!r} is not accepted")
    if "crit" in header or header.get("b64") is False:
        raise JwsError("critical header parameters are not supported")
    if len(key) < _MIN_KEY_BYTES[algorithm]:
        raise JwsError(f"the key is too short for {algorithm}")
    signing_input = f"{parts[0]}.{parts[1]}".encode("ascii")
    expected = hmac.new(key, signing_input, _HMAC_ALGORITHMS[algorithm]).digest()
    if not hmac.compare_digest(expected, signature):
        raise JwsError("signature does not verify")
    try:
        claims = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise JwsError("JWS payload is not JSON") from exc
    if not isinstance(claims, dict):
        raise JwsError("JWS payload is not a JSON object of claims")
    moment = time.time() if now is None else now
    for claim, late in (("exp", True), ("nbf", False)):
        value = claims.get(claim)
        if value is None:
            continue
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise JwsError(f"claim {claim} is not a number")
        if (late and moment >= value) or (not late and moment < value):
            raise JwsError("token expired" if late else "token not valid yet")
    return claims


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
        "labels": {LABEL_KEY: LABEL_VALUE},
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


def _in_request_terms(exc: InvalidRequest) -> InvalidRequest:
    """The same error, naming the request's fields (appResource, sparkProperties.x, ...)."""
    if not exc.fields:
        return exc
    fields = [FieldError(_origin(f.field), f.message) for f in exc.fields]
    return InvalidRequest("; ".join(f"{f.field}: {f.message}" for f in fields), fields)


def driver_state(job: Job) -> str:
    if job.state is JobState.QUEUED and job.attempts > 0:
        return "RELAUNCHING"
    if job.state is JobState.FAILED and job.exit_code is None:
        return "ERROR"
    return _DRIVER_STATE[job.state]


# ---- the listener -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SparkRestOptions:
    """How the listener admits callers and whom its jobs run as."""

    run_as: str
    allowed_networks: tuple[Network, ...]
    jws_key: bytes | None
    server_version: str
    max_request_bytes: int = 1024 * 1024
    default_cluster: str = "local"

    @classmethod
    def from_settings(cls, settings: Settings, server_version: str) -> SparkRestOptions:
        """Raises ConfigError for a network or secret that cannot be used."""
        try:
            networks = tuple(ipaddress.ip_network(n) for n in settings.spark_rest_allowed_networks)
        except ValueError as exc:
            raise ConfigError(f"spark_rest.allowed_networks: {exc}") from exc
        secret = settings.spark_rest_jws_secret
        return cls(
            run_as=settings.spark_rest_user or "",
            allowed_networks=networks,
            jws_key=jws_key(secret) if secret else None,
            server_version=server_version,
            max_request_bytes=settings.max_request_bytes,
        )

    def allows(self, host: str | None) -> bool:
        if not self.allowed_networks and self.jws_key is not None:
            return True  # no network given: the token is the gate
        if host is None:
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.allowed_networks)


class _RestError(Exception):
    """An answer that is an ErrorResponse: status, message, and for a version mismatch the
    version we speak."""

    def __init__(self, status: int, message: str, highest_version: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.highest_version = highest_version


_STATUS_BY_ERROR: list[tuple[type[ChidoriError], int]] = [
    (InvalidRequest, 400),
    (Forbidden, 403),
    # The run-as user was disabled: nothing the caller can fix by authenticating.
    (Unauthenticated, 403),
    (NotFound, 404),
    (PayloadTooLarge, 413),
    (RateLimited, 429),
    (StoreUnavailable, 503),
    (QueueUnavailable, 503),
    (BackendError, 502),
]


def _status_for(exc: ChidoriError) -> int:
    for error_type, status in _STATUS_BY_ERROR:
        if isinstance(exc, error_type):
            return status
    return 400


def check_spark_rest(identity: IdentityService, options: SparkRestOptions) -> None:
    """ConfigError unless the listener admits only chosen callers (networks or a JWS secret)
    and runs their jobs as an existing, enabled user who is not an admin (an admin is allowed
    only behind a JWS secret: its holders are then trusted as admins)."""
    if not options.allowed_networks and options.jws_key is None:
        raise ConfigError(
            "spark_rest needs allowed_networks (CHIDORI_SPARK_REST_ALLOWED_NETWORKS) or a JWS "
            "secret (CHIDORI_SPARK_REST_JWS_SECRET): the protocol has no authentication, and "
            "every driver runs on this host's loopback"
        )
    if not options.run_as:
        if options.jws_key is None:
            raise ConfigError(
                "spark_rest.run_as (CHIDORI_SPARK_REST_USER) must name a user who is not an "
                "admin: its jobs are subject to the job policy"
            )
        return  # behind a JWS secret, unset run_as runs as the bootstrap admin
    try:
        principal = identity.principal_for(options.run_as)
    except (NotFound, Unauthenticated) as exc:
        raise ConfigError(
            f"spark_rest.run_as (CHIDORI_SPARK_REST_USER): {exc.message}; create the user first"
        ) from exc
    if principal.is_admin and options.jws_key is None:
        raise ConfigError(
            f"spark_rest.run_as (CHIDORI_SPARK_REST_USER) {options.run_as!r} is an admin: "
            "admins are exempt from the job policy, so name a plain user (or set a JWS secret)"
        )


def build_spark_rest_app(
    jobs: JobService,
    identity: IdentityService,
    readiness: Callable[[], object],
    options: SparkRestOptions,
) -> FastAPI:
    """The listener's application. Raises ConfigError when it would be open to anyone or run
    its jobs with powers its callers were not given, so the server refuses to start rather
    than run that way."""
    check_spark_rest(identity, options)

    # Not Chidori's API: no OpenAPI, docs or lifespan (the main app's lifespan runs the
    # scheduler, once).
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    version = options.server_version

    def error(status: int, message: str, highest: str | None = None) -> JSONResponse:
        body = ErrorResponse(
            server_spark_version=version, message=message, highest_protocol_version=highest
        ).body()
        return JSONResponse(body, status_code=status)

    def answer(message: SparkRestResponse) -> JSONResponse:
        return JSONResponse(message.body())

    @app.exception_handler(_RestError)
    async def _rest_error(_request: Request, exc: _RestError) -> JSONResponse:
        return error(exc.status, exc.message, exc.highest_version)

    @app.exception_handler(ChidoriError)
    async def _domain(_request: Request, exc: ChidoriError) -> JSONResponse:
        response = error(_status_for(exc), exc.message)
        if isinstance(exc, RateLimited):
            response.headers["Retry-After"] = str(max(1, round(exc.retry_after)))
        return response

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, _exc: Exception) -> JSONResponse:
        log.exception("unhandled error on Spark REST %s %s", request.method, request.url.path)
        return error(500, "Internal server error")

    @app.middleware("http")
    async def admit(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        host = request.client.host if request.client else None
        if not options.allows(host):
            return error(
                403, f"requests from {host} are not allowed by spark_rest.allowed_networks"
            )
        if options.jws_key is not None:
            # As Spark's JWSFilter: 403 for a missing, malformed or unverified token, with no
            # detail to the caller.
            scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
            if not scheme:
                return error(403, "Authorization header is missing.")
            if scheme != "Bearer" or not token.strip():
                return error(403, "Malformed Authorization header.")
            try:
                verify_jws(token.strip(), options.jws_key)
            except JwsError as exc:
                log.info("Spark REST request from %s refused: %s", host, exc)
                return error(403, "JWT Validate Fail")
        return await call_next(request)

    run_as = options.run_as or BOOTSTRAP_ADMIN

    def actor(request: Request) -> Actor:
        source = request.client.host if request.client else None
        return Actor(identity.principal_for(run_as), source)

    def our_job(request: Request, value: str) -> Job | None:
        """The job behind a submission id, if it came through this listener; None otherwise
        (this listener cannot reach jobs submitted elsewhere)."""
        parsed = parse_submission_id(value)
        if parsed is None:
            return None
        job_id, stamp = parsed
        try:
            job = jobs.get(actor(request), job_id)
        except NotFound:
            return None
        if job.channel != Channel.SPARK_REST:  # a label is the user's: the channel is ours
            return None
        if _utc(job.created_at).strftime(_ID_TIME_FORMAT) != stamp:
            return None
        return job

    def first_segment(tail: str, what: str) -> str:
        segment = next((part for part in tail.split("/") if part), None)
        if segment is None:
            raise _RestError(400, f"Submission ID is missing in {what} request.")
        return segment

    router = APIRouter(prefix=f"/{PROTOCOL_VERSION}/submissions")

    @router.post("/create")
    @router.post("/create/{tail:path}")
    async def create(request: Request) -> JSONResponse:
        raw = await _read_body(request, options.max_request_bytes)
        submission = _parse_create(raw)
        spec = spec_from_request(submission, options.default_cluster)
        try:
            # The actor is read from the store too: off the event loop, like the submit.
            job, _created = await run_in_threadpool(
                lambda: jobs.submit(actor(request), spec, channel=Channel.SPARK_REST)
            )
        except InvalidRequest as exc:
            raise _in_request_terms(exc) from exc
        sid = submission_id(job)
        log.info("Spark REST submission %s is job %d", sid, job.id)
        unknown = sorted(submission.model_extra or {})
        return answer(
            CreateSubmissionResponse(
                server_spark_version=version,
                message=f"Driver successfully submitted as {sid}",
                success=True,
                submission_id=sid,
                unknown_fields=unknown or None,
            )
        )

    @router.get("/status")
    @router.get("/status/{tail:path}")
    async def status(request: Request, tail: str = "") -> JSONResponse:
        sid = first_segment(tail, "status")
        job = await run_in_threadpool(our_job, request, sid)
        if job is None:
            # Spark's master: 200, success false, no state.
            return answer(
                SubmissionStatusResponse(
                    server_spark_version=version,
                    submission_id=sid,
                    success=False,
                    message=f"Submission {sid} not found",
                )
            )
        attempts: list[Attempt] = await run_in_threadpool(
            lambda: jobs.attempts(actor(request), job.id)
        )
        last = attempts[-1] if attempts else None
        failed = job.state in (JobState.FAILED, JobState.CANCELLED)
        return answer(
            SubmissionStatusResponse(
                server_spark_version=version,
                submission_id=sid,
                success=True,
                driver_state=driver_state(job),
                worker_id=last.server_id if last else None,
                worker_host_port=last.host if last else None,
                message=job.reason if failed else None,
            )
        )

    @router.post("/kill")
    @router.post("/kill/{tail:path}")
    async def kill(request: Request, tail: str = "") -> JSONResponse:
        sid = first_segment(tail, "kill")
        job = await run_in_threadpool(our_job, request, sid)
        if job is None or job.state.terminal:
            return answer(
                KillSubmissionResponse(
                    server_spark_version=version,
                    submission_id=sid,
                    success=False,
                    message=f"Driver {sid} has already finished or does not exist",
                )
            )
        await run_in_threadpool(lambda: jobs.cancel(actor(request), job.id))
        return answer(
            KillSubmissionResponse(
                server_spark_version=version,
                submission_id=sid,
                success=True,
                message=f"Kill request for {sid} submitted",
            )
        )

    @router.post("/killall")
    async def killall(request: Request) -> JSONResponse:
        await run_in_threadpool(lambda: _cancel_all(jobs, actor(request)))
        return answer(
            SparkRestResponse(
                action="KillAllSubmissionResponse",
                server_spark_version=version,
                success=True,
                message="Kill request for all drivers submitted",
            )
        )

    @router.post("/clear")
    async def clear() -> JSONResponse:
        # Spark's master forgets finished drivers; Chidori's history is the point, so it keeps
        # them and says so.
        return answer(
            SparkRestResponse(
                action="ClearResponse",
                server_spark_version=version,
                success=True,
                message="Chidori keeps finished submissions in its job history",
            )
        )

    @router.get("/readyz")
    async def readyz() -> JSONResponse:
        try:
            await run_in_threadpool(readiness)
        except (StoreUnavailable, QueueUnavailable) as exc:
            return error(503, f"Chidori is not ready: {exc.message}")
        return answer(
            SparkRestResponse(
                action="ReadyzResponse", server_spark_version=version, success=True, message=""
            )
        )

    app.include_router(router)

    @app.api_route(
        "/{path:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
    )
    async def elsewhere(request: Request, path: str) -> JSONResponse:
        """Spark's ErrorServlet: what is wrong with the path, and our version on a mismatch."""
        parts = [part for part in path.split("/") if part]
        if not parts:
            raise _RestError(400, "Missing protocol version." + _PATH_HINT)
        if parts[0] != PROTOCOL_VERSION:
            raise _RestError(
                UNKNOWN_PROTOCOL_VERSION,
                f"Unknown protocol version '{parts[0]}'." + _PATH_HINT,
                PROTOCOL_VERSION,
            )
        if len(parts) == 1 or parts[1] != "submissions":
            raise _RestError(400, "Missing the /submissions prefix." + _PATH_HINT)
        if len(parts) > 2 and parts[2] in ACTIONS:
            raise _RestError(405, f"HTTP method {request.method} is not supported by this URL")
        raise _RestError(
            400,
            "Missing an action: please specify one of /create, /kill, /killall, /clear, "
            "/status, or /readyz." + _PATH_HINT,
        )

    return app


async def _read_body(request: Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _no_constant(name: str) -> object:
    # NaN and Infinity are not JSON (Spark's Jackson refuses them too).
    raise ValueError(f"{name} is not a JSON value")


def _parse_create(raw: bytes) -> CreateSubmissionRequest:
    """The request, or a 400 ErrorResponse saying why not (Spark: "Malformed request: ...")."""
    try:
        data = json.loads(raw, parse_constant=_no_constant)
    except RecursionError as exc:
        raise _RestError(400, "Malformed request: the body is nested too deeply") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise _RestError(400, f"Malformed request: the body is not JSON: {exc}") from exc
    if not isinstance(data, dict) or "action" not in data:
        raise _RestError(400, "Malformed request: Action field not found in JSON")
    if data["action"] != "CreateSubmissionRequest":
        raise _RestError(
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
        raise _RestError(400, f"Malformed request: {problems}") from exc


def _cancel_all(jobs: JobService, actor: Actor) -> int:
    """Cancel every active job submitted through this listener that `actor` may see."""
    query = JobQuery(
        states=(JobState.QUEUED, *sorted(ACTIVE_JOB_STATES)),
        channel=Channel.SPARK_REST,
        limit=200,
    )
    cancelled = 0
    while True:
        page = jobs.search(actor, query)
        for job in page.items:
            jobs.cancel(actor, job.id)
            cancelled += 1
        if page.next_before_id is None:
            return cancelled
        query = replace(query, before_id=page.next_before_id)


def spark_version() -> str:
    """The Spark version to report (`serverSparkVersion`): the installed pyspark's, which is
    what Chidori runs jobs with by default."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pyspark")
    except PackageNotFoundError:
        return "4.0.0"
