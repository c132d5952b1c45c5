"""Dataset history through the API: `GET /api/v1/history?schema=S&table=T`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from chidori.api.deps import CurrentActor
from chidori.api.schemas import error_responses
from chidori.domain.records import Job
from chidori.services.history import DEFAULT_RUNS, MAX_RUNS, DatasetHistory, HistoryService
from chidori.web.job_views import decode_cursor, encode_cursor


class RunOut(BaseModel):
    """One run (job) of a dataset."""

    id: int
    name: str
    state: str = Field(description="QUEUED, ADMITTED, RUNNING, SUCCEEDED, FAILED or CANCELLED")
    user: str
    queue: str
    cluster: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_seconds: float | None = Field(description="From start to end; null until it ends")
    attempts: int
    reason: str | None
    spark_app_id: str | None

    @classmethod
    def of(cls, job: Job) -> RunOut:
        return cls(
            id=job.id,
            name=job.name,
            state=job.state.value,
            user=job.owner,
            queue=job.spec.queue,
            cluster=job.spec.cluster,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            duration_seconds=job.duration_seconds,
            attempts=job.attempts,
            reason=job.reason,
            spark_app_id=job.spark_app_id,
        )


class HistoryOut(BaseModel):
    """The runs of one dataset the caller may see, newest first."""

    model_config = ConfigDict(populate_by_name=True)

    schema_name: str = Field(serialization_alias="schema")
    table_name: str = Field(serialization_alias="table")
    items: list[RunOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for older runs")

    @classmethod
    def of(cls, history: DatasetHistory) -> HistoryOut:
        return cls(
            schema_name=history.schema_name,
            table_name=history.table_name,
            items=[RunOut.of(job) for job in history.runs],
            next_cursor=encode_cursor(history.next_before_id),
        )


def build_history_router(history: HistoryService) -> APIRouter:
    router = APIRouter(
        prefix="/api/v1", tags=["history"], responses=error_responses(401, 403, 422, 503)
    )

    @router.get("/history", response_model=HistoryOut, response_model_by_alias=True)
    def dataset_history(
        who: CurrentActor,
        schema: Annotated[str, Query(min_length=1, max_length=256)],
        table: Annotated[str, Query(min_length=1, max_length=256)],
        limit: Annotated[int, Query(ge=1, le=MAX_RUNS)] = DEFAULT_RUNS,
        cursor: Annotated[str | None, Query(max_length=200)] = None,
    ) -> HistoryOut:
        """Runs of one dataset (jobs with this schema and table), newest first, with their
        durations: what the caller may see."""
        return HistoryOut.of(history.runs(who, schema, table, limit, decode_cursor(cursor)))

    return router
