"""Response shapes of the REST API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from chidori.domain.records import Attempt, Event, Job
from chidori.domain.units import format_memory
from chidori.web.job_views import progress_detail_view, progress_view, public_spec


class FieldErrorOut(BaseModel):
    field: str = Field(description="Dotted path of the bad field, e.g. `conf.spark.x`")
    message: str


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. `not_found`")
    message: str
    fields: list[FieldErrorOut]


class ErrorResponse(BaseModel):
    """Every error answer of the API: `{"error": {"code", "message", "fields"}}`."""

    error: ErrorDetail


ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "Malformed request body (e.g. invalid JSON or multipart)",
    401: "Not authenticated: missing, invalid, expired or revoked token",
    403: "Authenticated, but not allowed",
    404: "Not found",
    409: "Conflict with the current state",
    413: "Request body too large",
    422: "Invalid request: `fields` says which fields and why",
    429: "Too many requests: retry after `Retry-After` seconds",
    503: "The database is unavailable",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries for these error statuses, all with `ErrorResponse`."""
    return {
        status: {"model": ErrorResponse, "description": ERROR_DESCRIPTIONS[status]}
        for status in statuses
    }


class ProgressOut(BaseModel):
    """Live Spark progress of an attempt (docs/progress.md): `*_total` = known so far (tasks
    over the stages started so far); `final` = the attempt ended and this is its summary."""

    updated_at: datetime
    final: bool
    jobs_done: int
    jobs_total: int
    jobs_failed: int
    stages_done: int
    stages_total: int
    stages_active: int
    stages_failed: int
    tasks_done: int
    tasks_total: int
    tasks_failed: int

    @classmethod
    def of(cls, progress: dict[str, Any] | None) -> ProgressOut | None:
        shown = progress_view(progress)
        return None if shown is None else cls.model_validate(shown)


class StageOut(BaseModel):
    stage_id: int
    attempt: int
    name: str
    state: str = Field(description="ACTIVE, COMPLETE, FAILED, SKIPPED or PENDING")
    tasks_done: int
    tasks_total: int
    tasks_failed: int
    submitted_at: int | None = Field(description="Epoch milliseconds")
    completed_at: int | None = Field(description="Epoch milliseconds")
    duration_ms: int | None
    input_bytes: int
    output_bytes: int
    shuffle_read_bytes: int
    shuffle_write_bytes: int
    spill_bytes: int = Field(description="Bytes spilled to disk")


class ProgressDetailOut(ProgressOut):
    stages: list[StageOut] = Field(description="Newest last, at most 500")


class NoProgressOut(BaseModel):
    """No Spark progress is known (not a Spark job, not started, or nothing read yet)."""

    progress: None = None


def progress_answer(progress: dict[str, Any] | None) -> ProgressDetailOut | NoProgressOut:
    """What `GET /api/v1/jobs/{id}/progress` answers: the whole summary, or `{"progress":
    null}` when none is known."""
    shown = progress_detail_view(progress)
    return NoProgressOut() if shown is None else ProgressDetailOut.model_validate(shown)


class JobOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    id: int
    name: str
    state: str
    kind: str
    cluster: str
    queue: str
    priority: int
    schema_name: str | None = Field(serialization_alias="schema")
    table_name: str | None = Field(serialization_alias="table")
    labels: dict[str, str]
    user: str
    created_at: datetime
    admitted_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    duration_seconds: float | None
    attempts: int
    reason: str | None
    spark_app_id: str | None
    exit_code: int | None
    cancel_requested: bool
    waiting_reason: str | None = Field(description="Why a queued job waits (which limit)")
    start_type: str | None = Field(
        None, description="How the current attempt started: cold, or warm (a warm driver)"
    )
    start_note: str | None = Field(None, description="Why it started cold, where a pool exists")
    queue_wait_seconds: float | None = Field(None, description="Submission to admission")
    startup_seconds: float | None = Field(
        None, description="Admission until the application could run (driver start-up)"
    )
    run_seconds: float | None = Field(None, description="Application start to the job's end")
    demand: dict[str, Any] = Field(description="Memory and cores of the driver and executors")
    spec: dict[str, Any]
    progress: ProgressOut | None = Field(
        None, description="The current attempt's live Spark progress (null: none known)"
    )

    @classmethod
    def of(cls, job: Job) -> JobOut:
        spec = job.spec
        return cls(
            id=job.id,
            name=job.name,
            state=job.state.value,
            kind=spec.kind,
            cluster=spec.cluster,
            queue=spec.queue,
            priority=spec.priority,
            schema_name=spec.schema_name,
            table_name=spec.table_name,
            labels=dict(spec.labels),
            user=job.owner,
            created_at=job.created_at,
            admitted_at=job.admitted_at,
            start_type=job.start_type,
            start_note=job.start_note,
            queue_wait_seconds=job.queue_wait_seconds,
            startup_seconds=job.startup_seconds,
            run_seconds=job.run_seconds,
            started_at=job.started_at,
            finished_at=job.finished_at,
            duration_seconds=job.duration_seconds,
            attempts=job.attempts,
            reason=job.reason,
            spark_app_id=job.spark_app_id,
            exit_code=job.exit_code,
            cancel_requested=job.cancel_requested,
            waiting_reason=job.waiting_reason,
            demand={"memory": format_memory(job.demand.memory_mb), "cores": job.demand.cores},
            spec=public_spec(job),
            progress=ProgressOut.of(job.progress),
        )


class JobPage(BaseModel):
    items: list[JobOut]
    next_cursor: str | None


class EventOut(BaseModel):
    id: int
    time: datetime
    type: str
    state: str | None
    attempt: int | None
    actor: str
    reason: str | None
    source: str | None

    @classmethod
    def of(cls, event: Event) -> EventOut:
        return cls(
            id=event.id,
            time=event.time,
            type=event.type,
            state=event.state,
            attempt=event.attempt,
            actor=event.actor,
            reason=event.reason,
            source=event.source,
        )


class EventList(BaseModel):
    items: list[EventOut]


class ExecutorPodOut(BaseModel):
    """One executor pod of an attempt on a Kubernetes cluster."""

    name: str
    executor_id: str | None = None
    node: str | None = None
    phase: str
    restarts: int = 0
    reason: str | None = None  # why it is pending, waiting, failed or was evicted
    created_at: str | None = None
    deleting: bool = False  # being deleted
    deleted: bool = False  # gone from the API server (as last seen before)


class AttemptOut(BaseModel):
    number: int
    state: str
    host: str
    server_id: str
    pid: int | None
    started_at: datetime
    finished_at: datetime | None
    spark_app_id: str | None
    exit_code: int | None
    reason: str | None
    start_type: str | None = None
    start_note: str | None = None
    ready_at: datetime | None = None
    executors: list[ExecutorPodOut] | None = None  # Kubernetes clusters: as last seen
    progress: ProgressOut | None = None  # Spark progress (docs/progress.md)
    remote_run_id: str | None = Field(None, description="Remote clusters: the service's run id")
    remote_url: str | None = Field(None, description="Remote clusters: the run's page there")

    @classmethod
    def of(cls, attempt: Attempt) -> AttemptOut:
        return cls(
            number=attempt.number,
            state=attempt.state.value,
            host=attempt.host,
            server_id=attempt.server_id,
            pid=attempt.pid,
            started_at=attempt.started_at,
            finished_at=attempt.finished_at,
            spark_app_id=attempt.spark_app_id,
            exit_code=attempt.exit_code,
            reason=attempt.reason,
            start_type=attempt.start_type,
            start_note=attempt.start_note,
            ready_at=attempt.ready_at,
            executors=None
            if attempt.executors is None
            else [ExecutorPodOut.model_validate(e) for e in attempt.executors],
            progress=ProgressOut.of(attempt.progress),
            remote_run_id=attempt.remote_run_id,
            remote_url=attempt.remote_url,
        )


class AttemptList(BaseModel):
    items: list[AttemptOut]


class UploadOut(BaseModel):
    uri: str
    sha256: str
    size: int


class Status(BaseModel):
    status: str
    detail: str | None = None
