"""The Livy REST API for batches, at the server's root, so existing Livy clients (pylivy,
Airflow's Livy operator, scripts) work unchanged: `POST/GET /batches`, `GET/DELETE
/batches/{id}`, `GET /batches/{id}/state`, `GET /batches/{id}/log`.

Request and response shapes and status codes follow Livy's documentation; errors answer
`{"msg": ...}` as Livy does (the routes are `LivyBatchRoute`s: see `livy_errors.py`).
Authentication is ours: HTTP basic with the token as password
(what Livy clients can send) or a bearer token. A batch is an ordinary Chidori job: it shows
in the UI, obeys limits and policy, and is retried.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import Field

from chidori.api.deps import current_actor
from chidori.api.livy_common import (
    LIVY_ERRORS,
    MAX_WINDOW,
    LivyMessage,
    LivySparkRequest,
    job_spec,
    line_window,
    parse_body,
)
from chidori.api.livy_errors import LivyBatchRoute
from chidori.api.schemas import error_responses
from chidori.domain.records import SUBMITTED_THROUGH, Job, JobQuery
from chidori.domain.spec import JobKind, JobSpec
from chidori.domain.states import JobState
from chidori.services.identity import Actor
from chidori.services.jobs import JobService
from chidori.services.sessions import SessionService
from chidori.web.job_views import MAX_ID

# Livy's batch states for ours (Livy: not_started, starting, running, success, dead, killed...).
LIVY_STATE = {
    JobState.QUEUED: "starting",
    JobState.ADMITTED: "starting",
    JobState.RUNNING: "running",
    JobState.SUCCEEDED: "success",
    JobState.FAILED: "dead",
    JobState.CANCELLED: "killed",
}


class LivyBatchRequest(LivySparkRequest):
    """Livy's CreateBatchRequest."""

    file: str = Field(min_length=1)
    class_name: str | None = Field(None, alias="className")
    args: list[str] = Field(default_factory=list)

    def spec(self) -> JobSpec:
        fields = self.job_fields() | {"application": self.file}
        if self.class_name:
            fields["main_class"] = self.class_name
        if self.args:
            fields["args"] = self.args
        return job_spec(fields)


def batch_json(job: Job, log: list[str]) -> dict[str, Any]:
    return {
        "id": job.id,
        "name": job.name,
        "owner": job.owner,
        "proxyUser": None,
        "state": LIVY_STATE[job.state],
        "appId": job.spark_app_id,
        "appInfo": {"driverLogUrl": None, "sparkUiUrl": None},
        "log": log,
    }


BatchId = Annotated[int, Path(ge=1, le=MAX_ID)]


def build_livy_router(jobs: JobService, livy_sessions: SessionService | None = None) -> APIRouter:
    router = APIRouter(
        tags=["livy"],
        responses={**LIVY_ERRORS, **error_responses(422)},
        route_class=LivyBatchRoute,
    )

    def who(request: Request, authorization: str | None) -> Actor:
        return current_actor(request, authorization)

    def tail(actor: Actor, job_id: int, lines: int = 100) -> list[str]:
        return jobs.read_log_lines(actor, job_id, None, lines).lines

    @router.post(
        "/batches",
        status_code=201,
        response_model=dict[str, Any],
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": LivyBatchRequest.model_json_schema(by_alias=True)
                    }
                },
            }
        },
    )
    def create_batch(
        request: Request,
        body: Annotated[dict[str, Any], Body()],
        authorization: Annotated[str | None, Header()] = None,
    ) -> JSONResponse:
        """Livy: create a batch (201 with the batch)."""
        actor = who(request, authorization)
        job, _ = jobs.submit(actor, parse_body(LivyBatchRequest, body).spec())
        return JSONResponse(batch_json(job, []), status_code=201)

    @router.get("/batches", response_model=dict[str, Any])
    def list_batches(
        request: Request,
        from_: Annotated[int, Query(alias="from", ge=0, le=MAX_WINDOW)] = 0,
        size: Annotated[int, Query(ge=1, le=MAX_WINDOW)] = 20,
        authorization: Annotated[str | None, Header()] = None,
    ) -> JSONResponse:
        """Livy: `{"from", "total", "sessions": [batch]}` (newest first)."""
        actor = who(request, authorization)
        if livy_sessions is not None:
            # Sessions are Livy jobs too, but not batches.
            total, found = livy_sessions.list_batches(actor, from_, size)
            batches = [batch_json(job, []) for job in found]
            return JSONResponse({"from": from_, "total": total, "sessions": batches})
        page = jobs.search(
            actor, JobQuery(labels=((SUBMITTED_THROUGH, "livy"),), limit=from_ + size)
        )
        found = [job for job in page.items if job.spec.kind is not JobKind.SESSION]
        sessions = [batch_json(job, []) for job in found[from_:]]
        return JSONResponse({"from": from_, "total": len(sessions), "sessions": sessions})

    @router.get("/batches/{batch_id}", response_model=dict[str, Any])
    def get_batch(
        request: Request, batch_id: BatchId, authorization: Annotated[str | None, Header()] = None
    ) -> JSONResponse:
        actor = who(request, authorization)
        return JSONResponse(batch_json(jobs.get(actor, batch_id), tail(actor, batch_id)))

    @router.get("/batches/{batch_id}/state", response_model=dict[str, Any])
    def batch_state(
        request: Request, batch_id: BatchId, authorization: Annotated[str | None, Header()] = None
    ) -> JSONResponse:
        job = jobs.get(who(request, authorization), batch_id)
        return JSONResponse({"id": job.id, "state": LIVY_STATE[job.state]})

    @router.get("/batches/{batch_id}/log", response_model=dict[str, Any])
    def batch_log(
        request: Request,
        batch_id: BatchId,
        from_: Annotated[int | None, Query(alias="from", ge=0, le=2**31)] = None,
        size: Annotated[int, Query(ge=0, le=100_000)] = 100,
        authorization: Annotated[str | None, Header()] = None,
    ) -> JSONResponse:
        """Livy: lines `from` (default: the last `size`) — `{"id", "from", "total", "log"}`."""
        actor = who(request, authorization)
        return line_window(batch_id, jobs.read_log_lines(actor, batch_id, from_, size))

    @router.delete("/batches/{batch_id}", response_model=LivyMessage)
    def delete_batch(
        request: Request, batch_id: BatchId, authorization: Annotated[str | None, Header()] = None
    ) -> JSONResponse:
        """Livy: kill the batch — `{"msg": "deleted"}`."""
        jobs.cancel(who(request, authorization), batch_id)
        return JSONResponse({"msg": "deleted"})

    return router
