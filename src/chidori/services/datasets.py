"""The dataset index: every dataset (schema.table) the caller may see, with its last run, last
success, freshness, recent outcomes and typical durations; and the values filters suggest."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime

from chidori.domain.errors import InvalidRequest
from chidori.domain.records import Job, JobQuery
from chidori.domain.states import JobState
from chidori.services.identity import Actor
from chidori.services.jobs import JobService
from chidori.store.datasets import SUGGESTED_FIELDS, DatasetCatalog

RECENT_RUNS = 50  # the runs each dataset's outcomes and percentiles are drawn from
STRIP_RUNS = 20  # outcomes shown in a dataset's strip
MAX_DATASETS = 500
MAX_SUGGESTIONS = 50


def percentile(values: list[float], fraction: float) -> float | None:
    """The nearest-rank percentile (`fraction` 0..1) of `values`; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class DatasetSummary:
    schema_name: str
    table_name: str
    last_run: Job
    last_success: Job | None
    recent: list[Job] = field(default_factory=list)  # newest first, at most STRIP_RUNS
    p50_seconds: float | None = None  # over the succeeded runs among the RECENT_RUNS newest
    p95_seconds: float | None = None
    succeeded_runs: int = 0  # how many runs the percentiles come from

    def freshness_seconds(self, now: datetime) -> float | None:
        """Time since the last success ended (None: never succeeded)."""
        if self.last_success is None or self.last_success.finished_at is None:
            return None
        return max(0.0, (now - self.last_success.finished_at).total_seconds())


def summarize(
    schema: str, table: str, recent: list[Job], last_success: Job | None
) -> DatasetSummary:
    """A dataset's summary from its newest runs (newest first) and its last success."""
    durations = [
        job.duration_seconds
        for job in recent
        if job.state is JobState.SUCCEEDED and job.duration_seconds is not None
    ]
    return DatasetSummary(
        schema,
        table,
        recent[0],
        last_success,
        recent[:STRIP_RUNS],
        percentile(durations, 0.5),
        percentile(durations, 0.95),
        len(durations),
    )


class DatasetService:
    def __init__(self, jobs: JobService, catalog: DatasetCatalog) -> None:
        self._jobs = jobs
        self._catalog = catalog

    @staticmethod
    def _visible_to(actor: Actor) -> tuple[str, str | None] | None:
        return None if actor.principal.is_admin else (actor.name, actor.principal.team)

    def summary(self, actor: Actor, schema: str, table: str) -> DatasetSummary | None:
        """One dataset's summary (names matched ignoring case); None: no run `actor` sees."""
        query = JobQuery(schema_name=schema, table_name=table, limit=RECENT_RUNS)
        recent = self._jobs.search(actor, query).items
        if not recent:
            return None
        last_success = next((j for j in recent if j.state is JobState.SUCCEEDED), None)
        if last_success is None:
            succeeded = JobQuery(
                states=(JobState.SUCCEEDED,), schema_name=schema, table_name=table, limit=1
            )
            found = self._jobs.search(actor, succeeded).items
            last_success = found[0] if found else None
        newest = recent[0]
        return summarize(
            newest.spec.schema_name or schema, newest.spec.table_name or table, recent, last_success
        )

    def index(
        self, actor: Actor, containing: str | None = None, limit: int = MAX_DATASETS
    ) -> list[DatasetSummary]:
        """Every dataset `actor` may see (up to `limit`), most recently run first."""
        names = self._catalog.names(
            self._visible_to(actor), containing or None, max(1, min(limit, MAX_DATASETS))
        )
        found = (self.summary(actor, n.schema_name, n.table_name) for n in names)
        return [summary for summary in found if summary is not None]

    def suggestions(
        self, actor: Actor, field_name: str, prefix: str, schema: str | None = None
    ) -> list[str]:
        """Existing values of a filter field that start with `prefix`, ignoring case."""
        if field_name not in SUGGESTED_FIELDS:
            raise InvalidRequest.for_field(
                "field", f"one of {', '.join(SUGGESTED_FIELDS)}, not {field_name!r}"
            )
        narrowed = schema if field_name == "table" and schema else None
        return self._catalog.suggestions(
            field_name, prefix, self._visible_to(actor), MAX_SUGGESTIONS, narrowed
        )


def now() -> datetime:
    return datetime.now(UTC)
