"""Datasets through the API: the index (`GET /api/v1/datasets`), the values filters suggest
(`GET /api/v1/datasets/suggestions`), and what changed since a dataset's last good run
(`GET /api/v1/jobs/{id}/changes`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from chidori.api.deps import CurrentActor
from chidori.api.schemas import error_responses
from chidori.domain.records import Job
from chidori.services.changes import ChangesService, RunChanges
from chidori.services.datasets import MAX_DATASETS, DatasetService, DatasetSummary
from chidori.web.job_views import MAX_ID

SuggestedField = Literal["schema", "table", "queue", "cluster", "user"]


class RunBrief(BaseModel):
    """One run of a dataset, briefly."""

    id: int
    name: str
    state: str
    created_at: datetime
    finished_at: datetime | None
    duration_seconds: float | None

    @classmethod
    def of(cls, job: Job) -> RunBrief:
        return cls(
            id=job.id,
            name=job.name,
            state=job.state.value,
            created_at=job.created_at,
            finished_at=job.finished_at,
            duration_seconds=job.duration_seconds,
        )


class DatasetOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    schema_name: str = Field(serialization_alias="schema")
    table_name: str = Field(serialization_alias="table")
    last_run: RunBrief
    last_success: RunBrief | None
    freshness_seconds: float | None = Field(description="Since the last success ended")
    recent: list[RunBrief] = Field(description="The newest runs, newest first")
    p50_seconds: float | None
    p95_seconds: float | None
    succeeded_runs: int = Field(description="Succeeded runs the percentiles come from")

    @classmethod
    def of(cls, summary: DatasetSummary, now: datetime) -> DatasetOut:
        return cls(
            schema_name=summary.schema_name,
            table_name=summary.table_name,
            last_run=RunBrief.of(summary.last_run),
            last_success=RunBrief.of(summary.last_success) if summary.last_success else None,
            freshness_seconds=summary.freshness_seconds(now),
            recent=[RunBrief.of(job) for job in summary.recent],
            p50_seconds=summary.p50_seconds,
            p95_seconds=summary.p95_seconds,
            succeeded_runs=summary.succeeded_runs,
        )


class DatasetList(BaseModel):
    items: list[DatasetOut]


class Suggestions(BaseModel):
    field: str
    values: list[str]


class ValueChangeOut(BaseModel):
    key: str
    before: Any = Field(description="In the last good run (null: not set)")
    after: Any = Field(description="In this run (null: not set)")


class TimingOut(BaseModel):
    name: str = Field(description="duration, queue_wait, startup or run")
    seconds: float | None
    p50_seconds: float | None = Field(description="The dataset's median over recent successes")
    ratio: float | None = Field(description="seconds / p50_seconds")


class ErrorLineOut(BaseModel):
    line: int = Field(description="1-based line number in the driver log")
    text: str


class ChangesOut(BaseModel):
    """What differs between a run and its dataset's last SUCCEEDED run before it."""

    job_id: int
    state: str
    baseline: RunBrief | None = Field(description="The last good run; null: none before")
    spec: list[ValueChangeOut]
    conf: list[ValueChangeOut]
    timings: list[TimingOut]
    first_error: ErrorLineOut | None
    packages: list[str] = Field(
        default_factory=list,
        description="Resolved Python packages that differ, e.g. 'numpy 2.1.0 → 2.2.0'",
    )

    @classmethod
    def of(cls, changes: RunChanges) -> ChangesOut:
        error = changes.first_error
        return cls(
            job_id=changes.job.id,
            state=changes.job.state.value,
            baseline=RunBrief.of(changes.baseline) if changes.baseline else None,
            spec=[ValueChangeOut(key=c.key, before=c.before, after=c.after) for c in changes.spec],
            conf=[ValueChangeOut(key=c.key, before=c.before, after=c.after) for c in changes.conf],
            timings=[
                TimingOut(name=t.name, seconds=t.seconds, p50_seconds=t.p50_seconds, ratio=t.ratio)
                for t in changes.timings
            ],
            first_error=ErrorLineOut(line=error.number, text=error.text) if error else None,
            packages=changes.packages,
        )


def build_dataset_router(datasets: DatasetService, changes: ChangesService) -> APIRouter:
    router = APIRouter(
        prefix="/api/v1", tags=["history"], responses=error_responses(401, 403, 422, 503)
    )

    @router.get("/datasets", response_model=DatasetList, response_model_by_alias=True)
    def dataset_index(
        who: CurrentActor,
        q: Annotated[str | None, Query(max_length=256)] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_DATASETS)] = MAX_DATASETS,
    ) -> DatasetList:
        """Every dataset (schema.table) the caller may see, most recently run first, with its
        last run, last success, freshness, recent outcomes and p50/p95 durations. `q`: only
        datasets whose `schema.table` holds it, ignoring case."""
        now = datetime.now(UTC)
        return DatasetList(items=[DatasetOut.of(s, now) for s in datasets.index(who, q, limit)])

    @router.get("/datasets/suggestions", response_model=Suggestions)
    def suggestions(
        who: CurrentActor,
        field: SuggestedField,
        prefix: Annotated[str, Query(max_length=256)] = "",
        schema: Annotated[str | None, Query(max_length=256)] = None,
    ) -> Suggestions:
        """Existing values of a filter field starting with `prefix`, ignoring case (a table's
        may be narrowed to one `schema`): what the filter inputs suggest."""
        return Suggestions(field=field, values=datasets.suggestions(who, field, prefix, schema))

    @router.get("/jobs/{job_id}/changes", response_model=ChangesOut, responses=error_responses(404))
    def run_changes(job_id: Annotated[int, Path(ge=1, le=MAX_ID)], who: CurrentActor) -> ChangesOut:
        """What changed since the dataset's last good run: spec and conf differences against
        its last SUCCEEDED run before this one, timings against the dataset's medians, and
        the first error line of the log (artifact paths shown as the submitted files)."""
        return ChangesOut.of(changes.changes(who, job_id))

    return router
