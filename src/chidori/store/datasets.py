"""The datasets jobs write to, read from the `jobs` table: which exist, and the values a
filter may suggest.

A dataset is a (schema, table) pair, whatever the case of its letters: the names are grouped
and matched lower-cased (as `ix_jobs_dataset_ci`, migration 0016, indexes them), and shown as
its newest run spells them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, literal, select

from chidori.domain.records import JobQuery
from chidori.store.job_list import ReadableDatabase, filters
from chidori.store.models import JobRow

SUGGESTION_WINDOW = 20_000  # fields without an index suggest from the newest jobs only
_COLUMNS: dict[str, Any] = {
    "schema": JobRow.schema_name,
    "table": JobRow.table_name,
    "queue": JobRow.queue,
    "cluster": JobRow.cluster,
    "user": JobRow.owner,
}
SUGGESTED_FIELDS = tuple(_COLUMNS)
_INDEXED = frozenset({"schema", "table", "queue", "user"})


@dataclass(frozen=True)
class DatasetName:
    schema_name: str
    table_name: str
    newest_id: int


def _like_prefix(prefix: str) -> Any:
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return func.lower(literal(escaped + "%"))


class DatasetCatalog:
    def __init__(self, db: ReadableDatabase) -> None:
        self._db = db

    def names(
        self, visible_to: tuple[str, str | None] | None, containing: str | None, limit: int
    ) -> list[DatasetName]:
        """Datasets with a run `visible_to` may see (None: every run), most recently run
        first; `containing`: only those whose `schema.table` holds it, ignoring case."""
        schema = func.lower(JobRow.schema_name)
        table = func.lower(JobRow.table_name)
        newest = func.max(JobRow.id)
        conditions = filters(JobQuery(visible_to=visible_to))
        conditions += [JobRow.schema_name.is_not(None), JobRow.table_name.is_not(None)]
        if containing:
            escaped = containing.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            pattern = func.lower(literal(f"%{escaped}%"))
            conditions.append((schema + "." + table).like(pattern, escape="\\"))
        grouped = (
            select(newest)
            .where(*conditions)
            .group_by(schema, table)
            .order_by(newest.desc())
            .limit(limit)
        )
        with self._db.reading() as session:
            ids = list(session.scalars(grouped))
            if not ids:
                return []
            spelled = session.execute(
                select(JobRow.id, JobRow.schema_name, JobRow.table_name).where(JobRow.id.in_(ids))
            ).all()
        by_id = {row.id: row for row in spelled}
        return [
            DatasetName(by_id[i].schema_name, by_id[i].table_name, i) for i in ids if i in by_id
        ]

    def suggestions(
        self,
        field: str,
        prefix: str,
        visible_to: tuple[str, str | None] | None,
        limit: int,
        schema_name: str | None = None,
    ) -> list[str]:
        """Distinct values of one filter field starting with `prefix` (ignoring case), in
        order; a table's values may be narrowed to one schema. Fields without an index look
        at the newest SUGGESTION_WINDOW jobs only, so the answer stays cheap."""
        column = _COLUMNS[field]
        conditions = filters(JobQuery(visible_to=visible_to, schema_name=schema_name))
        conditions.append(column.is_not(None))
        if prefix:
            conditions.append(func.lower(column).like(_like_prefix(prefix), escape="\\"))
        if field in _INDEXED:
            stmt = select(column).where(*conditions).distinct().order_by(column).limit(limit)
        else:
            recent = (
                select(column.label("value"))
                .where(*conditions)
                .order_by(JobRow.id.desc())
                .limit(SUGGESTION_WINDOW)
                .subquery()
            )
            stmt = select(recent.c.value).distinct().order_by(recent.c.value).limit(limit)
        with self._db.reading() as session:
            return [str(value) for value in session.scalars(stmt)]
