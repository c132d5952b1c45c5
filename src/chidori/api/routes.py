"""REST routes under /api/v1. Each handler parses the request and calls one service."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, File, Path, Query, Response, UploadFile
from fastapi.responses import StreamingResponse

from chidori.api.deps import CurrentActor
from chidori.api.schemas import (
    AttemptList,
    AttemptOut,
    EventList,
    EventOut,
    JobOut,
    JobPage,
    NoProgressOut,
    ProgressDetailOut,
    UploadOut,
    error_responses,
    progress_answer,
)
from chidori.api.submit import IDEMPOTENCY_KEY_MAX, Handler
from chidori.domain.errors import InvalidRequest
from chidori.domain.records import JobQuery
from chidori.domain.states import JobState
from chidori.services.jobs import JobService
from chidori.services.whole_log import WholeJobLog
from chidori.web.job_views import MAX_ID, decode_cursor, encode_cursor, log_download

JobId = Annotated[int, Path(ge=1, le=MAX_ID)]
AttemptNumber = Annotated[int | None, Query(ge=1, le=MAX_ID)]
AttemptInPath = Annotated[int, Path(ge=1, le=MAX_ID)]
SUBMIT_EXAMPLES = {
    "python": {
        "summary": "A Python job",
        "value": {"name": "pi", "kind": "python", "application": "examples/pi.py", "args": ["10"]},
    },
    "spark": {
        "summary": "A PySpark job with a table and labels",
        "value": {
            "name": "wordcount",
            "application": "examples/wordcount.py",
            "args": ["examples/data/words.txt"],
            "schema": "sales",
            "table": "orders",
            "labels": {"team": "data"},
            "executor_instances": 2,
        },
    },
}
LOG_HEADERS = {
    "X-Log-Offset": {
        "description": "Byte offset to continue from (give it as `offset` next time)",
        "schema": {"type": "integer"},
    },
    "X-Log-Size": {
        "description": "Size of the whole log in bytes (an answer carries at most 1 MiB of it)",
        "schema": {"type": "integer"},
    },
    "X-Log-Gone": {
        "description": "`true` when the attempt had a log that is no longer kept",
        "schema": {"type": "string"},
    },
}


def build_router(jobs: JobService, submit: Handler) -> APIRouter:
    router = APIRouter(prefix="/api/v1", responses=error_responses(401, 403, 422, 503))
    whole_logs = WholeJobLog(jobs)

    # The handler parses its own body and headers (see chidori.api.submit): they are
    # documented here.
    router.add_api_route(
        "/jobs",
        submit,
        methods=["POST"],
        status_code=201,
        response_model=JobOut,
        tags=["jobs"],
        summary="Submit Job",
        description=inspect.cleandoc(submit.__doc__ or ""),
        responses=error_responses(400, 409, 413, 429),
        openapi_extra={
            "parameters": [
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string", "maxLength": IDEMPOTENCY_KEY_MAX},
                }
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": "#/components/schemas/JobSpec"},
                        "examples": SUBMIT_EXAMPLES,
                    }
                },
            },
        },
    )

    @router.get("/jobs", response_model=JobPage, tags=["jobs"])
    def list_jobs(
        who: CurrentActor,
        state: Annotated[list[JobState] | None, Query()] = None,
        schema: Annotated[str | None, Query(max_length=256)] = None,
        table: Annotated[str | None, Query(max_length=256)] = None,
        queue: Annotated[str | None, Query(max_length=128)] = None,
        cluster: Annotated[str | None, Query(max_length=128)] = None,
        user: Annotated[str | None, Query(max_length=128)] = None,
        label: Annotated[list[str] | None, Query(description="K:V, repeatable")] = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        q: Annotated[str | None, Query(max_length=200)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
        cursor: Annotated[str | None, Query(max_length=200)] = None,
    ) -> JobPage:
        labels = []
        for item in label or []:
            key, sep, value = item.partition(":")
            if not sep or not key:
                raise InvalidRequest.for_field("label", f"{item!r} is not KEY:VALUE")
            labels.append((key, value))
        for field, moment in (("created_after", created_after), ("created_before", created_before)):
            if moment is not None and moment.tzinfo is None:
                raise InvalidRequest.for_field(
                    field, "give a time zone (e.g. 2026-01-31T00:00:00Z)"
                )
        page = jobs.search(
            who,
            JobQuery(
                states=tuple(state or ()),
                schema_name=schema,
                table_name=table,
                queue=queue,
                cluster=cluster,
                owner=user,
                labels=tuple(labels),
                created_after=created_after,
                created_before=created_before,
                text=q,
                limit=limit,
                before_id=decode_cursor(cursor),
            ),
        )
        return JobPage(
            items=[JobOut.of(job) for job in page.items],
            next_cursor=encode_cursor(page.next_before_id),
        )

    @router.get(
        "/jobs/{job_id}", response_model=JobOut, tags=["jobs"], responses=error_responses(404)
    )
    def get_job(job_id: JobId, who: CurrentActor) -> JobOut:
        return JobOut.of(jobs.get(who, job_id))

    @router.get(
        "/jobs/{job_id}/wait",
        response_model=JobOut,
        tags=["jobs"],
        responses=error_responses(404),
    )
    async def wait_for_job(
        job_id: JobId,
        who: CurrentActor,
        state: JobState | None = None,
        timeout: Annotated[float, Query(ge=0, le=60)] = 30,
    ) -> JobOut:
        """Long poll: answers as soon as the job's state differs from `state`."""
        return JobOut.of(await jobs.wait_for_change(who, job_id, state, timeout))

    @router.delete(
        "/jobs/{job_id}", response_model=JobOut, tags=["jobs"], responses=error_responses(404)
    )
    def cancel_job(job_id: JobId, who: CurrentActor) -> JobOut:
        """Cancel: a queued job is CANCELLED at once; a running one is stopped, then CANCELLED."""
        return JobOut.of(jobs.cancel(who, job_id))

    @router.get(
        "/jobs/{job_id}/events",
        response_model=EventList,
        tags=["jobs"],
        responses=error_responses(404),
    )
    def job_events(job_id: JobId, who: CurrentActor) -> EventList:
        return EventList(items=[EventOut.of(e) for e in jobs.events(who, job_id)])

    @router.get(
        "/jobs/{job_id}/attempts",
        response_model=AttemptList,
        tags=["jobs"],
        responses=error_responses(404),
    )
    def job_attempts(job_id: JobId, who: CurrentActor) -> AttemptList:
        return AttemptList(items=[AttemptOut.of(a) for a in jobs.attempts(who, job_id)])

    @router.get(
        "/jobs/{job_id}/progress",
        response_model=ProgressDetailOut | NoProgressOut,
        tags=["jobs"],
        responses=error_responses(404),
    )
    def job_progress(job_id: JobId, who: CurrentActor) -> ProgressDetailOut | NoProgressOut:
        """The current attempt's live Spark progress with its stages (newest last, at most
        500), or `{"progress": null}` when none is known (docs/progress.md)."""
        return progress_answer(jobs.progress(who, job_id))

    log_answer = {
        200: {
            "description": "The log text (streamed with `follow`)",
            "content": {"text/plain": {"schema": {"type": "string"}}},
            "headers": LOG_HEADERS,
        },
        **error_responses(404),
    }
    download_answer = {
        200: {
            "description": "The whole driver log, as an attachment (streamed)",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
        **error_responses(404),
    }

    def answer_log(
        who: CurrentActor,
        job_id: int,
        attempt: int | None,
        tail: int | None,
        offset: int | None,
        follow: bool,
    ) -> Response:
        if tail is not None and offset is not None:
            raise InvalidRequest.for_field("tail", "give tail or offset, not both")
        if follow:
            stream: AsyncIterator[bytes] = jobs.follow_log(who, job_id, attempt, offset, tail)
            return StreamingResponse(stream, media_type="text/plain; charset=utf-8")
        chunk = jobs.read_log(who, job_id, attempt, offset, tail)
        headers = {"X-Log-Offset": str(chunk.next_offset), "X-Log-Size": str(chunk.size)}
        if chunk.size == 0 and jobs.log_gone(job_id, attempt):
            headers["X-Log-Gone"] = "true"
        return Response(chunk.data, media_type="text/plain; charset=utf-8", headers=headers)

    # Not PlainTextResponse: FastAPI would then document the JSON errors as text/plain.
    @router.get("/jobs/{job_id}/logs", response_class=Response, tags=["logs"], responses=log_answer)
    def job_logs(
        job_id: JobId,
        who: CurrentActor,
        attempt: AttemptNumber = None,
        tail: Annotated[int | None, Query(ge=0, le=1_000_000)] = None,
        offset: Annotated[int | None, Query(ge=0, le=MAX_ID)] = None,
        follow: bool = False,
    ) -> Response:
        """The driver log as text. `tail` = last lines, `offset` = from a byte offset (the
        `X-Log-Offset` header of a previous answer); `follow` streams until the job ends."""
        return answer_log(who, job_id, attempt, tail, offset, follow)

    @router.get(
        "/jobs/{job_id}/attempts/{number}/logs",
        response_class=Response,
        tags=["logs"],
        responses=log_answer,
    )
    def attempt_logs(
        job_id: JobId,
        number: AttemptInPath,
        who: CurrentActor,
        tail: Annotated[int | None, Query(ge=0, le=1_000_000)] = None,
        offset: Annotated[int | None, Query(ge=0, le=MAX_ID)] = None,
        follow: bool = False,
    ) -> Response:
        """One attempt's driver log, as `/jobs/{id}/logs?attempt=N` (a path of its own, so a
        page can hand it to the log viewer as a base URL)."""
        return answer_log(who, job_id, number, tail, offset, follow)

    @router.get(
        "/jobs/{job_id}/logs/download",
        tags=["logs"],
        response_class=StreamingResponse,
        responses=download_answer,
    )
    def download_logs(
        job_id: JobId, who: CurrentActor, attempt: AttemptNumber = None
    ) -> StreamingResponse:
        return log_download(*jobs.download_log(who, job_id, attempt))

    @router.get(
        "/jobs/{job_id}/attempts/{number}/logs/download",
        tags=["logs"],
        response_class=StreamingResponse,
        responses=download_answer,
    )
    def download_attempt_logs(
        job_id: JobId, number: AttemptInPath, who: CurrentActor
    ) -> StreamingResponse:
        return log_download(*jobs.download_log(who, job_id, number))

    @router.get(
        "/jobs/{job_id}/logs/all",
        tags=["logs"],
        response_class=StreamingResponse,
        responses=download_answer,
    )
    def whole_log(job_id: JobId, who: CurrentActor) -> StreamingResponse:
        """Every attempt's log in order, each after a `===== attempt N: STATE ... =====` line."""
        name, chunks = whole_logs.download(who, job_id)
        return StreamingResponse(
            chunks,
            media_type="text/plain; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    @router.post(
        "/uploads",
        status_code=201,
        response_model=UploadOut,
        tags=["uploads"],
        responses=error_responses(400, 413),
    )
    def upload(file: Annotated[UploadFile, File()], who: CurrentActor) -> UploadOut:
        """Store an application or a file it needs; refer to it in a job as the `uri`."""
        stored = jobs.upload(who, file.file, file.filename or "upload")
        return UploadOut(uri=stored.uri, sha256=stored.sha256, size=stored.size)

    return router
