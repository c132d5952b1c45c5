"""`POST /api/v1/jobs`, the hottest request: one handler, served ahead of FastAPI's routing.

FastAPI's per-request machinery (route matching over every router, dependency solving, the
exit stack, a worker-thread hop for the checks) cost more CPU than storing the job. So the
handler parses the body itself and makes one call, `JobService.submit_async`, which runs the
checks on the event loop when everything they read is already in memory (the caller's token,
the policy, limits and queues, each kept for a second), and otherwise in a worker thread.
`SubmitLane` hands it the request before FastAPI's router; the FastAPI route (the same
handler) is what the OpenAPI schema documents.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import pydantic
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from chidori.api.deps import client_address, current_actor
from chidori.api.errors import domain_error_response, validation_error_response
from chidori.api.schemas import JobOut
from chidori.domain.errors import ChidoriError
from chidori.domain.spec import JobSpec
from chidori.services.jobs import JobService

SUBMIT_PATH = "/api/v1/jobs"
IDEMPOTENCY_KEY_MAX = 256
Handler = Callable[[Request], Awaitable[Response]]


def parse_spec(body: bytes) -> JobSpec:
    """The job spec in a request body; RequestValidationError (400 or 422) naming each bad
    field, as FastAPI would report it."""
    try:
        return JobSpec.model_validate_json(body)
    except pydantic.ValidationError as exc:
        errors: list[Any] = [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
        raise RequestValidationError(errors) from None


def idempotency_key(request: Request) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is not None and len(key) > IDEMPOTENCY_KEY_MAX:
        raise RequestValidationError(
            [
                {
                    "type": "string_too_long",
                    "loc": ("header", "idempotency-key"),
                    "msg": f"String should have at most {IDEMPOTENCY_KEY_MAX} characters",
                }
            ]
        )
    return key


def submission_handler(jobs: JobService) -> Handler:
    async def submit_job(request: Request) -> Response:
        """Submit a job. With `Idempotency-Key`, a retry with the same spec returns the first
        job (header `Idempotent-Replayed: true`); a different spec gets 409."""
        spec = parse_spec(await request.body())
        key = idempotency_key(request)
        authorization = request.headers.get("authorization")
        # The service decides where the checks run (on this loop, or in a worker thread that
        # authenticates the caller the way every route does).
        job, created = await jobs.submit_async(
            spec,
            key,
            authorization=authorization,
            source=client_address(request),
            authenticate=partial(current_actor, request, authorization),
        )
        return Response(
            JobOut.of(job).model_dump_json(by_alias=True),
            status_code=201,
            media_type="application/json",
            headers=None if created else {"Idempotent-Replayed": "true"},
        )

    return submit_job


class SubmitLane:
    """ASGI middleware: `POST /api/v1/jobs` goes straight to the submission handler, with the
    API's error answers; every other request goes on to FastAPI."""

    def __init__(self, app: ASGIApp, handler: Handler) -> None:
        self.app = app
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not (
            scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == SUBMIT_PATH
        ):
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        response: Response
        try:
            response = await self.handler(request)
        except ChidoriError as exc:
            response = domain_error_response(exc)
        except RequestValidationError as exc:
            response = validation_error_response(exc)
        await response(scope, receive, send)


def document_job_spec(app: FastAPI) -> None:
    """Add the JobSpec schema the submit route's request body refers to (FastAPI adds only
    the models of the parameters it parses itself)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        schema = build()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        if "JobSpec" not in components:
            spec = JobSpec.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(spec.pop("$defs", {}))
            components["JobSpec"] = spec
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
