"""Spark's standalone REST submission protocol, on its own listener, so a stock
`spark-submit --master spark://HOST:PORT --deploy-mode cluster --conf
spark.master.rest.enabled=true` submits to Chidori.

Paths, message shapes, status codes and messages follow Spark's `RestSubmissionServer`,
`StandaloneRestServer` and the `SubmitRestProtocol*` messages (checked against a Spark 4.3
master): `POST /v1/submissions/create`, `GET /v1/submissions/status/{id}`, `POST
/v1/submissions/kill/{id}`, `POST .../killall`, `POST .../clear`, `GET .../readyz`. Every answer
carries `action` and `serverSparkVersion` (the client refuses a response without it); errors
answer Spark's `ErrorResponse`. A submission becomes an ordinary Chidori job, labelled
`submitted-through: spark-rest` (`SUBMITTED_THROUGH`) for people and marked by the server
(`Job.channel`, which no caller can set) for this listener, run by the configured user in
client mode on a Chidori cluster. Status and kill reach only jobs so marked.

The protocol has no authentication of its own, so the listener admits callers by source
network and, if a secret is set, by an HS256 JWS bearer token, as Spark 4's `JWSFilter` does.
It refuses to start open to anyone: it needs allowed networks or a JWS secret, and a run-as
user who is not an admin (admins are exempt from the conf policy) unless a JWS secret
authenticates the callers.

Here: the listener (its options, who it admits, its routes). The protocol's messages and what a
submission stands for are in `spark_rest_messages.py`, its error answers (one table, as the
app's exception handlers) in `spark_rest_errors.py`, the JWS verifier in `jws.py`.
"""

from __future__ import annotations

import binascii
import ipaddress
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from chidori.api.jws import MIN_KEY_BYTES, JwsError, b64url_decode, verify_jws
from chidori.api.spark_rest_errors import install_spark_rest_error_handlers, spark_error
from chidori.api.spark_rest_messages import (
    PROTOCOL_VERSION,
    CreateSubmissionResponse,
    KillSubmissionResponse,
    RestError,
    SparkRestResponse,
    SubmissionStatusResponse,
    driver_state,
    parse_create,
    parse_submission_id,
    spec_from_request,
    submission_id,
    submission_stamp,
)
from chidori.config import ConfigError, Settings
from chidori.domain.errors import NotFound, PayloadTooLarge, Unauthenticated, Unavailable
from chidori.domain.records import Attempt, Channel, Job, JobQuery
from chidori.domain.states import ACTIVE_JOB_STATES, JobState
from chidori.services.identity import BOOTSTRAP_ADMIN, Actor, IdentityService
from chidori.services.jobs import JobService

log = logging.getLogger(__name__)

UNKNOWN_PROTOCOL_VERSION = 468  # Spark's own status code for a version it does not speak
ACTIONS = ("create", "kill", "killall", "clear", "status", "readyz")
_PATH_HINT = (
    f" Please submit requests through http://[host]:[port]/{PROTOCOL_VERSION}/submissions/..."
)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


# ---- the listener's settings ------------------------------------------------------------------


def jws_key(secret: str) -> bytes:
    """The HMAC key from the configured secret: base64url, as Spark's JWSFilter reads its
    `secretKey` (so one value serves both), and at least 256 bits, as jjwt requires for HS256.
    Raises ConfigError otherwise."""
    try:
        key = b64url_decode(secret.strip().rstrip("="))
    except (ValueError, binascii.Error) as exc:
        raise ConfigError(
            "CHIDORI_SPARK_REST_JWS_SECRET must be base64url-encoded (as Spark's JWSFilter "
            "secretKey)"
        ) from exc
    if len(key) < MIN_KEY_BYTES["HS256"]:
        raise ConfigError(
            "CHIDORI_SPARK_REST_JWS_SECRET must decode to at least 32 bytes (256 bits), "
            f"not {len(key)}"
        )
    return key


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


# ---- the listener -----------------------------------------------------------------------------


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
    install_spark_rest_error_handlers(app, options.server_version)
    app.middleware("http")(admission(options))
    app.include_router(submissions_router(Listener(jobs, identity, readiness, options)))
    app.add_api_route(
        "/{path:path}",
        elsewhere,
        methods=["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"],
    )
    return app


Middleware = Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]


def admission(options: SparkRestOptions) -> Middleware:
    """The gate in front of every route: the caller's network, then its JWS if a secret is
    set. As Spark's JWSFilter: 403 for a missing, malformed or unverified token, with no
    detail to the caller."""
    version = options.server_version

    async def admit(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        host = request.client.host if request.client else None
        if not options.allows(host):
            return spark_error(
                version, 403, f"requests from {host} are not allowed by spark_rest.allowed_networks"
            )
        if options.jws_key is not None:
            scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
            if not scheme:
                return spark_error(version, 403, "Authorization header is missing.")
            if scheme != "Bearer" or not token.strip():
                return spark_error(version, 403, "Malformed Authorization header.")
            try:
                verify_jws(token.strip(), options.jws_key)
            except JwsError as exc:
                log.info("Spark REST request from %s refused: %s", host, exc)
                return spark_error(version, 403, "JWT Validate Fail")
        return await call_next(request)

    return admit


@dataclass(frozen=True)
class Listener:
    """What the routes call: the services, as the listener's run-as user, on its own jobs."""

    jobs: JobService
    identity: IdentityService
    readiness: Callable[[], object]
    options: SparkRestOptions

    def actor(self, request: Request) -> Actor:
        source = request.client.host if request.client else None
        return Actor(self.identity.principal_for(self.options.run_as or BOOTSTRAP_ADMIN), source)

    def submit(self, request: Request, raw: bytes) -> tuple[Job, list[str]]:
        """The job a CreateSubmissionRequest became, and the request's unknown fields."""
        submission = parse_create(raw)
        spec = spec_from_request(submission, self.options.default_cluster)
        job, _created = self.jobs.submit(self.actor(request), spec, channel=Channel.SPARK_REST)
        return job, sorted(submission.model_extra or {})

    def our_job(self, request: Request, value: str) -> Job | None:
        """The job behind a submission id, if it came through this listener; None otherwise
        (this listener cannot reach jobs submitted elsewhere, and Spark answers a submission
        it does not know with `success: false`, not an error)."""
        parsed = parse_submission_id(value)
        if parsed is None:
            return None
        job_id, stamp = parsed
        try:
            job = self.jobs.get(self.actor(request), job_id)
        except NotFound:
            return None
        if job.channel != Channel.SPARK_REST:  # a label is the user's: the channel is ours
            return None
        if submission_stamp(job) != stamp:
            return None
        return job

    def last_attempt(self, request: Request, job: Job) -> Attempt | None:
        attempts = self.jobs.attempts(self.actor(request), job.id)
        return attempts[-1] if attempts else None

    def kill(self, request: Request, job: Job) -> None:
        self.jobs.cancel(self.actor(request), job.id)

    def kill_all(self, request: Request) -> int:
        """Cancel every active job submitted through this listener that the caller may see."""
        actor = self.actor(request)
        query = JobQuery(
            states=(JobState.QUEUED, *sorted(ACTIVE_JOB_STATES)),
            channel=Channel.SPARK_REST,
            limit=200,
        )
        cancelled = 0
        while True:
            page = self.jobs.search(actor, query)
            for job in page.items:
                self.jobs.cancel(actor, job.id)
                cancelled += 1
            if page.next_before_id is None:
                return cancelled
            query = replace(query, before_id=page.next_before_id)

    def ready(self) -> None:
        """Nothing, or RestError 503 saying why Chidori is not ready (Spark's readyz words,
        not the bare domain error the error table would answer)."""
        try:
            self.readiness()
        except Unavailable as exc:
            raise RestError(503, f"Chidori is not ready: {exc.message}") from exc


def submissions_router(listener: Listener) -> APIRouter:
    """`/v1/submissions/...`: each route reads the request, makes one call to the listener,
    and answers Spark's message. Errors are raised, answered by spark_rest_errors."""
    version = listener.options.server_version
    limit = listener.options.max_request_bytes
    router = APIRouter(prefix=f"/{PROTOCOL_VERSION}/submissions")

    def answer(message: SparkRestResponse) -> JSONResponse:
        return JSONResponse(message.body())

    @router.post("/create")
    @router.post("/create/{tail:path}")
    async def create(request: Request) -> JSONResponse:
        raw = await _read_body(request, limit)
        # The actor is read from the store too: off the event loop, like the submit.
        job, unknown = await run_in_threadpool(listener.submit, request, raw)
        sid = submission_id(job)
        log.info("Spark REST submission %s is job %d", sid, job.id)
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
        sid = _first_segment(tail, "status")
        job = await run_in_threadpool(listener.our_job, request, sid)
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
        last = await run_in_threadpool(listener.last_attempt, request, job)
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
        sid = _first_segment(tail, "kill")
        job = await run_in_threadpool(listener.our_job, request, sid)
        if job is None or job.state.terminal:
            return answer(
                KillSubmissionResponse(
                    server_spark_version=version,
                    submission_id=sid,
                    success=False,
                    message=f"Driver {sid} has already finished or does not exist",
                )
            )
        await run_in_threadpool(listener.kill, request, job)
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
        await run_in_threadpool(listener.kill_all, request)
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
        await run_in_threadpool(listener.ready)
        return answer(
            SparkRestResponse(
                action="ReadyzResponse", server_spark_version=version, success=True, message=""
            )
        )

    return router


async def elsewhere(request: Request, path: str) -> JSONResponse:
    """Spark's ErrorServlet: what is wrong with the path, and our version on a mismatch."""
    parts = [part for part in path.split("/") if part]
    if not parts:
        raise RestError(400, "Missing protocol version." + _PATH_HINT)
    if parts[0] != PROTOCOL_VERSION:
        raise RestError(
            UNKNOWN_PROTOCOL_VERSION,
            f"Unknown protocol version '{parts[0]}'." + _PATH_HINT,
            PROTOCOL_VERSION,
        )
    if len(parts) == 1 or parts[1] != "submissions":
        raise RestError(400, "Missing the /submissions prefix." + _PATH_HINT)
    if len(parts) > 2 and parts[2] in ACTIONS:
        raise RestError(405, f"HTTP method {request.method} is not supported by this URL")
    raise RestError(
        400,
        "Missing an action: please specify one of /create, /kill, /killall, /clear, "
        "/status, or /readyz." + _PATH_HINT,
    )


def _first_segment(tail: str, what: str) -> str:
    segment = next((part for part in tail.split("/") if part), None)
    if segment is None:
        raise RestError(400, f"Submission ID is missing in {what} request.")
    return segment


async def _read_body(request: Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def spark_version() -> str:
    """The Spark version to report (`serverSparkVersion`): the installed pyspark's, which is
    what Chidori runs jobs with by default."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pyspark")
    except PackageNotFoundError:
        return "4.0.0"
