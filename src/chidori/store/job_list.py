"""The jobs list query: filters, text search and keyset paging over the `jobs` table."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, Protocol

from sqlalchemy import exists, func, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from chidori.domain.records import JobQuery, Page
from chidori.store.models import JobLabelRow, JobRow
from chidori.store.rows import job_record


class ReadableDatabase(Protocol):
    @property
    def dialect(self) -> str: ...

    def reading(self) -> AbstractContextManager[Session]: ...


def list_jobs(db: ReadableDatabase, query: JobQuery) -> Page:
    """Newest first (or oldest first); `before_id` continues a previous page."""
    stmt = select(JobRow)
    conditions: list[Any] = []
    if query.states:
        conditions.append(JobRow.state.in_([s.value for s in query.states]))
    if query.schema_name is not None:
        conditions.append(JobRow.schema_name == query.schema_name)
    if query.table_name is not None:
        conditions.append(JobRow.table_name == query.table_name)
    if query.queue is not None:
        conditions.append(JobRow.queue == query.queue)
    if query.cluster is not None:
        conditions.append(JobRow.cluster == query.cluster)
    if query.owner is not None:
        conditions.append(JobRow.owner == query.owner)
    if query.channel is not None:
        conditions.append(JobRow.channel == query.channel)
    if query.visible_to is not None:
        viewer, team = query.visible_to
        conditions.append(
            or_(JobRow.owner == viewer, JobRow.team == team) if team else JobRow.owner == viewer
        )
    for key, value in query.labels:
        conditions.append(
            exists().where(
                JobLabelRow.job_id == JobRow.id,
                JobLabelRow.key == key,
                JobLabelRow.value == value,
            )
        )
    if query.created_after is not None:
        conditions.append(JobRow.created_at >= query.created_after)
    if query.created_before is not None:
        conditions.append(JobRow.created_at < query.created_before)
    if query.text:
        pattern = f"%{query.text.lower()}%"
        text_match: list[ColumnElement[bool]] = [func.lower(JobRow.name).like(pattern)]
        if query.text.isascii() and query.text.isdigit() and int(query.text) < 2**63:
            text_match.append(JobRow.id == int(query.text))
        conditions.append(or_(*text_match))
    if query.before_id is not None:
        conditions.append(
            JobRow.id > query.before_id if query.oldest_first else JobRow.id < query.before_id
        )
    order = JobRow.id.asc() if query.oldest_first else JobRow.id.desc()
    stmt = stmt.where(*conditions).order_by(order).limit(query.limit + 1)
    with db.reading() as session:
        rows = list(session.scalars(stmt))
    items = [job_record(row) for row in rows[: query.limit]]
    next_id = items[-1].id if len(rows) > query.limit else None
    return Page(items=items, next_before_id=next_id)
