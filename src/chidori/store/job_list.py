"""The jobs list query: filters, text search and keyset paging over the `jobs` table.

Order: newest first by id (oldest first with `oldest_first`), except when a date range is
given: then by `(created_at, id)`, served by `ix_jobs_created_at_id` whatever the range, so
that no planner can read a whole range (or scan the primary key filtering it) to find 50 jobs.
Both orders agree in practice (ids are given at insert, and `created_at` is the insert time);
the page cursor stays an id either way: the created_at it continues from is read back from the
cursor's row (or, were that row deleted since, from the nearest id before it).

Schema and table filters ignore case (`same_name`: the lower-cased names, as indexed).

Free text (`text`): a case-insensitive substring of the name (`%` and `_` match themselves),
or the job's id when the text is all digits. Three characters or more are looked up in a
trigram index (migration 0012): pg_trgm's GIN index on `lower(name)` on PostgreSQL (the planner
picks it for `LIKE` when the text is rare), the FTS5 table `jobs_fts` on SQLite (up to
FTS_CANDIDATES candidates, checked again with the same `LIKE`; more, and the text is common:
the list's own order finds a page of it soon). Shorter text, or a database without such an
index, scans in list order, which is quick for text many jobs match and slow for text few do.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, Protocol

from sqlalchemy import (
    column,
    exists,
    func,
    literal,
    or_,
    select,
    table,
    text,
    tuple_,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from chidori.domain.records import JobQuery, Page
from chidori.store.models import JobLabelRow, JobRow
from chidori.store.rows import job_record

TRIGRAM = 3  # the shortest text a trigram index can look up
FTS_CANDIDATES = 2000  # SQLite: more jobs than this may hold the text? then it is common
MAX_ID = 2**63 - 1
_FTS = table("jobs_fts", column("rowid"))


class ReadableDatabase(Protocol):
    @property
    def dialect(self) -> str: ...

    def reading(self) -> AbstractContextManager[Session]: ...


def list_jobs(db: ReadableDatabase, query: JobQuery) -> Page:
    """Newest first (or oldest first); `before_id` continues a previous page."""
    conditions = filters(query)
    by_time = query.created_after is not None or query.created_before is not None
    keys: list[Any] = [JobRow.created_at, JobRow.id] if by_time else [JobRow.id]
    order = [key.asc() if query.oldest_first else key.desc() for key in keys]
    with db.reading() as session:
        if db.dialect == "postgresql":
            # The plan depends on the values (a rare text, a narrow range): never let a cached
            # generic plan (psycopg prepares a statement run five times) choose without them.
            session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
        if query.before_id is not None:
            after = _after_cursor(session, query, by_time)
            if after is None:
                return Page()
            conditions.append(after)
        if query.text:
            job_id = _searched_id(query.text)
            match = _name_match(query.text)
            conditions.append(match if job_id is None else or_(match, JobRow.id == job_id))
            candidates = _fts_candidates(session, db.dialect, query, by_time)
            if candidates is not None:
                if job_id is not None:
                    candidates.append(job_id)
                conditions.append(JobRow.id.in_(candidates))
        stmt = select(JobRow).where(*conditions).order_by(*order).limit(query.limit + 1)
        rows = list(session.scalars(stmt))
    items = [job_record(row) for row in rows[: query.limit]]
    next_id = items[-1].id if len(rows) > query.limit else None
    return Page(items=items, next_before_id=next_id)


def filters(query: JobQuery) -> list[Any]:
    """The WHERE conditions of `query`'s filters (not its text, cursor or order)."""
    conditions: list[Any] = []
    if query.states:
        conditions.append(JobRow.state.in_([s.value for s in query.states]))
    # Dataset names ignore case: lower() on both sides, served by ix_jobs_dataset_ci (on the
    # lower-cased names, migration 0016) on SQLite and PostgreSQL alike.
    if query.schema_name is not None:
        conditions.append(same_name(JobRow.schema_name, query.schema_name))
    if query.table_name is not None:
        conditions.append(same_name(JobRow.table_name, query.table_name))
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
    return conditions


def same_name(name: ColumnElement[str | None] | Any, value: str) -> ColumnElement[bool]:
    """`name` equals `value` whatever the case (as the database folds it)."""
    result: ColumnElement[bool] = func.lower(name) == func.lower(literal(value))
    return result


def _after_cursor(session: Session, query: JobQuery, by_time: bool) -> ColumnElement[bool] | None:
    """The keyset condition for the rows after the cursor (None: there are none)."""
    cursor = query.before_id
    assert cursor is not None
    if not by_time:
        return JobRow.id > cursor if query.oldest_first else JobRow.id < cursor
    # The cursor's row, or the nearest one before it in the list's order if it is gone.
    nearest = select(JobRow.created_at)
    if query.oldest_first:
        nearest = nearest.where(JobRow.id >= cursor).order_by(JobRow.id.asc())
    else:
        nearest = nearest.where(JobRow.id <= cursor).order_by(JobRow.id.desc())
    created_at = session.scalar(nearest.limit(1))
    if created_at is None:
        return None
    key = tuple_(JobRow.created_at, JobRow.id)
    bound = tuple_(literal(created_at, JobRow.created_at.type), literal(cursor))
    return key > bound if query.oldest_first else key < bound


def _like_pattern(text_: str) -> str:
    escaped = text_.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _searched_id(text_: str | None) -> int | None:
    """The id an all-digits text also looks for."""
    if text_ is None or not (text_.isascii() and text_.isdigit()) or int(text_) > MAX_ID:
        return None
    return int(text_)


def _name_match(text_: str) -> ColumnElement[bool]:
    # lower() on both sides: the database folds the name and the text alike (SQLite folds
    # ASCII letters only, PostgreSQL by the database's locale).
    searched = func.lower(literal(_like_pattern(text_)))
    return func.lower(JobRow.name).like(searched, escape="\\")


def _fts_candidates(
    session: Session, dialect: str, query: JobQuery, by_time: bool
) -> list[int] | None:
    """SQLite: the ids of every job whose name may hold the text, from the FTS5 table, if
    there are fewer than FTS_CANDIDATES (None: no lookup, or more: the text is common, and the
    list's own order finds a page of it soon, with the other filters' indexes)."""
    assert query.text is not None
    if dialect != "sqlite" or len(query.text) < TRIGRAM or "\x00" in query.text:
        return None  # (FTS5 would read a NUL as the end of its query)
    if not _has_fts(session):
        return None
    rowid = _FTS.c.rowid
    stmt = select(rowid).where(text("jobs_fts MATCH :fts").bindparams(fts=_fts_query(query.text)))
    if not by_time:  # only the jobs after the cursor, in the list's order
        if query.before_id is not None:
            cursor = query.before_id
            stmt = stmt.where(rowid > cursor if query.oldest_first else rowid < cursor)
        stmt = stmt.order_by(rowid.asc() if query.oldest_first else rowid.desc())
    found = list(session.scalars(stmt.limit(FTS_CANDIDATES)))
    return found if len(found) < FTS_CANDIDATES else None


def _fts_query(text_: str) -> str:
    """The FTS5 query for the names that may contain `text_`: every third of its trigrams (and
    the last), each a one-token phrase, ANDed. A superset of the names holding the text (the
    LIKE decides), which FTS5 intersects several times faster than the whole text as one
    phrase, whose every token's positions it would compare (and the table keeps no positions:
    migration 0012 made it `detail=none`)."""
    grams = [text_[i : i + TRIGRAM] for i in range(len(text_) - TRIGRAM + 1)]
    cover = grams[::TRIGRAM]
    if cover[-1] != grams[-1]:
        cover.append(grams[-1])
    return " AND ".join('"' + gram.replace('"', '""') + '"' for gram in dict.fromkeys(cover))


def _has_fts(session: Session) -> bool:
    found = session.scalar(
        text("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'jobs_fts'")
    )
    return found is not None
