"""Dataset history: the runs of one dataset (schema + table), newest first, with durations."""

from __future__ import annotations

from dataclasses import dataclass, field

from chidori.domain.records import Job, JobQuery, Page
from chidori.services.identity import Actor
from chidori.services.jobs import JobService

DEFAULT_RUNS = 200
MAX_RUNS = 1000


@dataclass(frozen=True)
class DatasetHistory:
    schema_name: str
    table_name: str
    runs: list[Job] = field(default_factory=list)
    next_before_id: int | None = None


class HistoryService:
    def __init__(self, jobs: JobService) -> None:
        self._jobs = jobs

    @staticmethod
    def _query(schema_name: str, table_name: str, limit: int, before_id: int | None) -> JobQuery:
        return JobQuery(
            schema_name=schema_name,
            table_name=table_name,
            limit=max(1, min(limit, MAX_RUNS)),
            before_id=before_id,
        )

    @staticmethod
    def _history(schema_name: str, table_name: str, page: Page) -> DatasetHistory:
        return DatasetHistory(schema_name, table_name, page.items, page.next_before_id)

    def runs(
        self,
        actor: Actor,
        schema_name: str,
        table_name: str,
        limit: int = DEFAULT_RUNS,
        before_id: int | None = None,
    ) -> DatasetHistory:
        """The runs of this dataset that `actor` may see, newest first; `before_id` continues
        a previous page."""
        page = self._jobs.search(actor, self._query(schema_name, table_name, limit, before_id))
        return self._history(schema_name, table_name, page)
