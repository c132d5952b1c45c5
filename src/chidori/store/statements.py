"""The statements run for every job, built once.

Claiming a job, recording its start and its end, and the admit step's reads run these with
bound parameters on the transaction's connection: building a SQLAlchemy statement and its cache
key on every call cost several times the query itself on SQLite.
"""

from __future__ import annotations

import weakref
from collections import namedtuple
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, cast

from sqlalchemy import Connection, Dialect, Table, bindparam, insert, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.elements import ClauseElement

from chidori.domain.states import ACTIVE_ATTEMPT_STATES, ACTIVE_JOB_STATES, AttemptState, JobState
from chidori.store.database import LeanConnection
from chidori.store.models import AttemptRow, EventRow, JobLabelRow, JobRow

ACTIVE_JOB = [s.value for s in ACTIVE_JOB_STATES]
ACTIVE_ATTEMPT = [s.value for s in ACTIVE_ATTEMPT_STATES]
JOBS = cast(Table, JobRow.__table__)
ATTEMPTS = cast(Table, AttemptRow.__table__)
EVENTS = cast(Table, EventRow.__table__)
INSERT_EVENT = insert(EVENTS)
INSERT_JOBS = insert(JOBS).returning(JOBS.c.id, sort_by_parameter_order=True)
INSERT_LABELS = insert(cast(Table, JobLabelRow.__table__))
INSERT_ATTEMPT = insert(ATTEMPTS)
CLAIM = (
    update(JOBS)
    .where(JOBS.c.id == bindparam("b_id"), JOBS.c.state == JobState.QUEUED.value)
    .values(
        state=JobState.ADMITTED.value,
        attempts=JOBS.c.attempts + 1,
        admitted_at=bindparam("b_now"),
        updated_at=bindparam("b_now"),
        start_type=bindparam("b_start_type"),
        start_note=bindparam("b_start_note"),
        ready_at=None,
        reason=None,
        not_before=None,
        wait_reason=None,
    )
    .returning(*JOBS.c)
)
RUN_ATTEMPT = (
    update(ATTEMPTS)
    .where(
        ATTEMPTS.c.job_id == bindparam("b_job"),
        ATTEMPTS.c.number == bindparam("b_attempt"),
        ATTEMPTS.c.state == AttemptState.STARTING.value,
    )
    .values(
        state=AttemptState.RUNNING.value,
        pid=bindparam("b_pid"),
        log_path=bindparam("b_log"),
        ready_at=bindparam("b_ready"),
    )
)
RUN_JOB = (
    update(JOBS)
    .where(
        JOBS.c.id == bindparam("b_job"),
        JOBS.c.attempts == bindparam("b_attempt"),
        JOBS.c.state == JobState.ADMITTED.value,
    )
    .values(
        state=JobState.RUNNING.value,
        started_at=bindparam("b_now"),
        updated_at=bindparam("b_now"),
        ready_at=bindparam("b_ready"),
    )
)
END_ATTEMPT = (
    update(ATTEMPTS)
    .where(
        ATTEMPTS.c.job_id == bindparam("b_job"),
        ATTEMPTS.c.number == bindparam("b_attempt"),
        ATTEMPTS.c.state.in_(ACTIVE_ATTEMPT),
    )
    .values(
        state=bindparam("b_state"),
        finished_at=bindparam("b_now"),
        exit_code=bindparam("b_code"),
        reason=bindparam("b_reason"),
    )
)
JOB_TO_FINISH = (
    select(
        JOBS.c.attempts,
        JOBS.c.state,
        JOBS.c.cancel_requested,
        JOBS.c.failed_attempts,
        JOBS.c.lost_attempts,
        JOBS.c.spec,
    )
    .where(JOBS.c.id == bindparam("b_job"))
    .with_for_update()
)
CANCEL_REQUESTED = (
    select(*ATTEMPTS.c)
    .join(JOBS, JOBS.c.id == ATTEMPTS.c.job_id)
    .where(
        ATTEMPTS.c.server_id == bindparam("b_server"),
        ATTEMPTS.c.state.in_(ACTIVE_ATTEMPT),
        JOBS.c.cancel_requested.is_(True),
        JOBS.c.attempts == ATTEMPTS.c.number,
    )
)
END_JOB = (
    update(JOBS)
    .where(JOBS.c.id == bindparam("b_job"))
    .values(
        state=bindparam("b_state"),
        reason=bindparam("b_reason"),
        exit_code=bindparam("b_code"),
        updated_at=bindparam("b_now"),
        finished_at=bindparam("b_finished"),
        not_before=bindparam("b_not_before"),
        failed_attempts=bindparam("b_failed"),
        lost_attempts=bindparam("b_lost"),
    )
    .returning(*JOBS.c)
)


# ---- running them lean --------------------------------------------------------------------


class LeanRows:
    """What `run` returns: the rows (named tuples) and the row count, read at once."""

    __slots__ = ("rowcount", "rows")

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self.rows = rows
        self.rowcount = rowcount

    def __iter__(self) -> Iterator[Any]:
        return iter(self.rows)

    def one_or_none(self) -> Any:
        return self.rows[0] if self.rows else None

    def one(self) -> Any:
        if len(self.rows) != 1:
            raise LookupError(f"expected one row, got {len(self.rows)}")
        return self.rows[0]

    def scalar(self) -> Any:
        return self.rows[0][0] if self.rows else None


@dataclass(frozen=True)
class _Compiled:
    sql: str
    names: tuple[str, ...] | None  # positional parameter order; None for named parameters
    defaults: Mapping[str, Any]  # parameters fixed when the statement was built (IN lists)
    binds: Mapping[str, Callable[[Any], Any]]
    row: Callable[..., Any] | None  # a named tuple for the result, when there is one
    types: tuple[Any, ...]  # the result columns' SQLAlchemy types
    # Their conversions, known at the first run: some depend on the driver's column types.
    results: list[tuple[Callable[[Any], Any] | None, ...]] = field(default_factory=list)


_NO_PARAMS: Mapping[str, Any] = MappingProxyType({})
# By statement (weakly: a statement built per admission store goes with it), then dialect.
_COMPILED: weakref.WeakKeyDictionary[
    ClauseElement, dict[tuple[str, tuple[str, ...] | None], _Compiled]
] = weakref.WeakKeyDictionary()


def _compile(
    statement: ClauseElement, dialect: Dialect, columns: tuple[str, ...] | None
) -> _Compiled:
    # An INSERT without values() names the columns it is given (as `conn.execute` does).
    compiled = cast(SQLCompiler, statement.compile(dialect=dialect, column_keys=columns))
    params = compiled.construct_params(_check=False)
    # The per-call parameters have no value here and must be given at each run; the others
    # (IN lists of states) are fixed, and expanded into the SQL once.
    required = {b.key for b in compiled.binds.values() if b.required}
    expanded = compiled._process_parameters_for_postcompile(params)
    defaults = {k: v for k, v in expanded.parameters.items() if k not in required}
    binds = cast(
        dict[str, Callable[[Any], Any]],
        {k: f for k, f in expanded.processors.items() if f is not None},
    )
    selected = compiled._result_columns
    row = namedtuple("LeanRow", [c.keyname for c in selected], rename=True) if selected else None
    types = tuple(c.type for c in selected)
    names = tuple(expanded.positiontup) if expanded.positiontup is not None else None
    return _Compiled(expanded.statement, names, defaults, binds, row, types)


def run(
    conn: Connection | LeanConnection,
    statement: ClauseElement,
    params: Mapping[str, Any] | Sequence[Mapping[str, Any]] = _NO_PARAMS,
) -> LeanRows:
    """Run a prebuilt statement on the DBAPI connection under `conn`'s transaction.

    The same SQL, bind and result conversions as `conn.execute`, compiled once per dialect,
    without SQLAlchemy's execution layer: for the few statements run for every job, that layer
    cost several times SQLite's own work (`bench/dispatch.py`)."""
    dialect = conn.dialect
    first = params if isinstance(params, Mapping) else params[0]
    columns = tuple(first) if isinstance(statement, Insert) else None
    by_dialect = _COMPILED.get(statement)
    if by_dialect is None:
        by_dialect = _COMPILED[statement] = {}
    compiled = by_dialect.get((dialect.name, columns))
    if compiled is None:
        compiled = by_dialect[(dialect.name, columns)] = _compile(statement, dialect, columns)
    if isinstance(conn, LeanConnection):
        cursor = conn.dbapi.cursor()
    else:
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        try:
            if isinstance(params, Mapping):
                cursor.execute(compiled.sql, _bound(compiled, params))
            else:
                cursor.executemany(compiled.sql, [_bound(compiled, p) for p in params])
        except dialect.loaded_dbapi.Error as exc:
            # As SQLAlchemy would raise it (OperationalError, IntegrityError ...), so the
            # boundary (`Database.writing`) translates it as it does every other failure.
            raise DBAPIError.instance(
                compiled.sql, None, exc, dialect.loaded_dbapi.Error, dialect=dialect
            ) from exc
        rows: list[Any] = []
        if compiled.row is not None and cursor.description is not None:
            if not compiled.results:
                compiled.results.append(
                    tuple(
                        type_._cached_result_processor(dialect, column[1])
                        for type_, column in zip(compiled.types, cursor.description, strict=True)
                    )
                )
            results, make = compiled.results[0], compiled.row
            for raw in cursor.fetchall():
                rows.append(
                    make(
                        *(
                            v if f is None or v is None else f(v)
                            for f, v in zip(results, raw, strict=True)
                        )
                    )
                )
        return LeanRows(rows, cursor.rowcount)
    finally:
        cursor.close()


def _bound(compiled: _Compiled, params: Mapping[str, Any]) -> Any:
    values = {**compiled.defaults, **params} if compiled.defaults else params
    binds = compiled.binds
    if compiled.names is None:
        return {k: binds[k](v) if k in binds and v is not None else v for k, v in values.items()}
    out = []
    for name in compiled.names:
        v = values[name]
        out.append(binds[name](v) if v is not None and name in binds else v)
    return out
