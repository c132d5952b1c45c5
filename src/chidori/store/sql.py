"""The SQL store. Every state change happens here, in one transaction with its event.

Transitions are compare-and-set updates (`WHERE state = ...`, `WHERE attempts = N`), so they are
safe to re-run on any replica and a stale actor (an old attempt) cannot overwrite a newer one.
"""

from __future__ import annotations

import asyncio
import functools
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    Connection,
    Engine,
    Row,
    Table,
    bindparam,
    create_engine,
    event,
    exists,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.exc import InterfaceError as SAInterfaceError
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from chidori.domain.admission import Resources, job_demand
from chidori.domain.errors import Conflict, NotFound, StoreUnavailable
from chidori.domain.policy import executor_extra_mib
from chidori.domain.records import (
    Attempt,
    Claim,
    Ending,
    Event,
    Job,
    JobQuery,
    Outcome,
    Page,
    Server,
)
from chidori.domain.spec import JobSpec, fingerprint_of
from chidori.domain.states import (
    ACTIVE_ATTEMPT_STATES,
    ACTIVE_JOB_STATES,
    AttemptState,
    JobState,
)
from chidori.domain.units import parse_memory_mib
from chidori.queues.base import Message
from chidori.store.models import (
    AttemptRow,
    EventRow,
    JobLabelRow,
    JobRow,
    ServerRow,
    UploadRow,
)

Clock = Callable[[], datetime]
DispatchWriter = Callable[[Session, Sequence[Message], datetime], None]
"""(session, job id, queue name, now): adds a job's dispatch message inside its transaction."""
MIGRATIONS = Path(__file__).parent / "migrations"
PG_STALL_LIMIT_MS = 5000
_ACTIVE_JOB = [s.value for s in ACTIVE_JOB_STATES]
_ACTIVE_ATTEMPT = [s.value for s in ACTIVE_ATTEMPT_STATES]
# Core tables, for the statements the scheduler runs for every job: built once here, so each
# run skips SQLAlchemy's per-statement construction and cache-key work (several times the cost
# of the query itself on SQLite).
JOBS = cast(Table, JobRow.__table__)
ATTEMPTS = cast(Table, AttemptRow.__table__)
EVENTS = cast(Table, EventRow.__table__)
INSERT_EVENT = insert(EVENTS)
_INSERT_JOBS = insert(JOBS).returning(JOBS.c.id, sort_by_parameter_order=True)
_INSERT_LABELS = insert(cast(Table, JobLabelRow.__table__))
_INSERT_ATTEMPT = insert(ATTEMPTS)
_CLAIM = (
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
_RUN_ATTEMPT = (
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
_RUN_JOB = (
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
_END_ATTEMPT = (
    update(ATTEMPTS)
    .where(
        ATTEMPTS.c.job_id == bindparam("b_job"),
        ATTEMPTS.c.number == bindparam("b_attempt"),
        ATTEMPTS.c.state.in_(_ACTIVE_ATTEMPT),
    )
    .values(
        state=bindparam("b_state"),
        finished_at=bindparam("b_now"),
        exit_code=bindparam("b_code"),
        reason=bindparam("b_reason"),
    )
)
_JOB_TO_FINISH = (
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
_CANCEL_REQUESTED = (
    select(*ATTEMPTS.c)
    .join(JOBS, JOBS.c.id == ATTEMPTS.c.job_id)
    .where(
        ATTEMPTS.c.server_id == bindparam("b_server"),
        ATTEMPTS.c.state.in_(_ACTIVE_ATTEMPT),
        JOBS.c.cancel_requested.is_(True),
        JOBS.c.attempts == ATTEMPTS.c.number,
    )
)
_END_JOB = (
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


def utcnow() -> datetime:
    return datetime.now(UTC)


def normalize_url(url: str) -> str:
    """Accept plain `postgresql://` URLs and use the psycopg 3 driver for them."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def _sqlite_engine(url: str, begin: str) -> Engine:
    # Enough pooled connections for the API's worker threads: an overflow connection is
    # opened and closed per use, and opening one runs the PRAGMAs below.
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": 30},
        pool_size=20,
        max_overflow=40,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control from pysqlite so BEGIN IMMEDIATE can be issued for writes:
        # without it, two writers may deadlock upgrading shared locks.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Straight to the driver: SQLAlchemy's statement execution cost several times the
        # BEGIN itself, on every transaction.
        conn.connection.driver_connection.execute(begin)

    return engine


def open_store(url: str, clock: Clock = utcnow) -> Store:
    """Open (and create, for SQLite) the database at `url`. Does not migrate."""
    url = normalize_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        return Store(_sqlite_engine(url, "BEGIN"), _sqlite_engine(url, "BEGIN IMMEDIATE"), clock)
    engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # A replica frozen (or cut off) inside a transaction must not hold its locks for
        # long: PostgreSQL ends such a transaction, and nobody waits on a lock forever.
        with dbapi_conn.cursor() as cursor:
            cursor.execute(f"SET idle_in_transaction_session_timeout = '{PG_STALL_LIMIT_MS}'")
            cursor.execute(f"SET lock_timeout = '{PG_STALL_LIMIT_MS}'")
        dbapi_conn.commit()

    return Store(engine, engine, clock)


def job_record(row: JobRow | Row[Any]) -> Job:
    return Job(
        id=row.id,
        name=row.name,
        state=JobState(row.state),
        spec=JobSpec.from_stored(row.spec),
        owner=row.owner,
        team=row.team,
        created_at=row.created_at,
        updated_at=row.updated_at,
        admitted_at=row.admitted_at,
        start_type=row.start_type,
        start_note=row.start_note,
        ready_at=row.ready_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        attempts=row.attempts,
        reason=row.reason,
        spark_app_id=row.spark_app_id,
        exit_code=row.exit_code,
        cancel_requested=row.cancel_requested,
        demand=Resources(1, row.demand_memory_mb, row.demand_cores),
        waiting_reason=row.wait_reason if row.state == JobState.QUEUED.value else None,
        channel=row.channel,
    )


def _insert_jobs_pipelined(conn: Connection, values: list[dict[str, Any]]) -> list[int]:
    """Insert jobs on PostgreSQL and return their ids, in order: one short INSERT sent for
    every row in one pipeline (psycopg's `executemany`). SQLAlchemy's single multi-row
    statement is long and different for each batch size, so psycopg parsed it anew for every
    batch: a tenth of the server's CPU at 1,000 submissions a second."""
    from psycopg.types.json import Json

    columns = tuple(values[0])
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    cursor.executemany(
        _pg_insert_job(columns),
        [tuple(Json(v) if k == "spec" else v for k, v in row.items()) for row in values],
        returning=True,
    )
    ids = []
    while True:
        ids.append(int(cursor.fetchone()[0]))
        if not cursor.nextset():
            return ids


@functools.cache
def _pg_insert_job(columns: tuple[str, ...]) -> str:
    names = ", ".join(f'"{c}"' for c in columns)
    marks = ", ".join(["%s"] * len(columns))
    return f"INSERT INTO jobs ({names}) VALUES ({marks}) RETURNING id"


def _new_job(job_id: int, spec: JobSpec, values: dict[str, Any]) -> Job:
    """The record of a job just inserted with `values` (no row to read back, no spec to
    validate again)."""
    return Job(
        id=job_id,
        name=values["name"],
        state=JobState.QUEUED,
        spec=spec,
        owner=values["owner"],
        team=values["team"],
        created_at=values["created_at"],
        updated_at=values["updated_at"],
        admitted_at=None,
        started_at=None,
        finished_at=None,
        attempts=0,
        reason=None,
        spark_app_id=None,
        exit_code=None,
        cancel_requested=False,
        demand=Resources(1, values["demand_memory_mb"], values["demand_cores"]),
        channel=values["channel"],
    )


def _attempt(row: AttemptRow | Row[Any]) -> Attempt:
    return Attempt(
        job_id=row.job_id,
        number=row.number,
        state=AttemptState(row.state),
        server_id=row.server_id,
        host=row.host,
        pid=row.pid,
        log_path=row.log_path,
        started_at=row.started_at,
        finished_at=row.finished_at,
        lease_expires_at=row.lease_expires_at,
        spark_app_id=row.spark_app_id,
        exit_code=row.exit_code,
        reason=row.reason,
        start_type=row.start_type,
        start_note=row.start_note,
        ready_at=row.ready_at,
    )


def _event(row: EventRow) -> Event:
    return Event(
        id=row.id,
        job_id=row.job_id,
        attempt=row.attempt,
        time=row.time,
        type=row.type,
        state=row.state,
        actor=row.actor,
        reason=row.reason,
        source=row.source,
    )


def spec_demand(spec: JobSpec) -> Resources:
    """The whole gang a job needs: its driver and all its executors, each executor with what
    Spark asks for beyond its heap (its memory overhead, off-heap and PySpark memory)."""
    return job_demand(
        parse_memory_mib(spec.driver_memory),
        spec.driver_cores,
        spec.executor_instances,
        parse_memory_mib(spec.executor_memory) + executor_extra_mib(spec),
        spec.executor_cores,
    )


def retry_backoff(failed_attempts: int) -> timedelta:
    """Wait before re-running a failed job: 2 s, 4 s, 8 s ... capped at 5 minutes."""
    return timedelta(seconds=min(2**failed_attempts, 300))


def claim_in_session(
    session: Session,
    job_id: int,
    server_id: str,
    host: str,
    lease_seconds: float,
    now: datetime,
    start_type: str | None = None,
    start_note: str | None = None,
    warm_driver: str | None = None,
) -> Claim | None:
    """Move one QUEUED job to ADMITTED with a new attempt owned by `server_id`, inside the
    caller's transaction. None if the job is no longer QUEUED (another replica took it)."""
    # One UPDATE ... RETURNING (a compare-and-set on the state) gives the row as it is now.
    conn = session.connection()
    row = conn.execute(
        _CLAIM,
        {"b_id": job_id, "b_now": now, "b_start_type": start_type, "b_start_note": start_note},
    ).one_or_none()
    if row is None:
        return None
    number = row.attempts
    conn.execute(
        _INSERT_ATTEMPT,
        {
            "job_id": job_id,
            "number": number,
            "state": AttemptState.STARTING.value,
            "server_id": server_id,
            "host": host,
            "started_at": now,
            "lease_expires_at": now + timedelta(seconds=lease_seconds),
            "start_type": start_type,
            "start_note": start_note,
        },
    )
    conn.execute(
        INSERT_EVENT,
        {
            "job_id": job_id,
            "attempt": number,
            "time": now,
            "type": "state",
            "state": "ADMITTED",
            "actor": server_id,
            "reason": f"attempt {number} on {host}",
        },
    )
    return Claim(job=job_record(row), attempt=number, warm_driver=warm_driver)


@dataclass(frozen=True)
class _NextState:
    state: JobState
    reason: str | None
    failed: int  # the job's failed and lost attempts so far, this one counted
    lost: int


def _next_state(
    outcome: Outcome,
    cancel_requested: bool,
    failed: int,
    lost: int,
    max_retries: int,
    lost_retry_limit: int,
    rerun_lost: bool = True,
) -> _NextState:
    """Where a job goes when its current attempt ends: done, or back to the queue."""
    if outcome.state is AttemptState.SUCCEEDED:
        return _NextState(JobState.SUCCEEDED, None, failed, lost)
    if outcome.state is AttemptState.CANCELLED or cancel_requested:
        return _NextState(JobState.CANCELLED, outcome.reason or "cancelled", failed, lost)
    if outcome.state is AttemptState.LOST:
        lost += 1
        if not rerun_lost:
            # The driver may have run to its end unrecorded: at most once, as the job asked.
            reason = f"driver host lost, not run again (rerun_lost is false): {outcome.reason}"
            return _NextState(JobState.FAILED, reason, failed, lost)
        if lost <= lost_retry_limit:
            return _NextState(JobState.QUEUED, f"retrying: {outcome.reason}", failed, lost)
        reason = f"driver host lost {lost} times: {outcome.reason}"
        return _NextState(JobState.FAILED, reason, failed, lost)
    failed += 1
    if failed <= max_retries:
        reason = f"retry {failed} of {max_retries} after: {outcome.reason}"
        return _NextState(JobState.QUEUED, reason, failed, lost)
    return _NextState(JobState.FAILED, outcome.reason, failed, lost)


@dataclass
class _Submission:
    spec: JobSpec
    owner: str
    team: str | None
    idempotency_key: str | None
    source: str | None
    channel: str | None = None  # set by the server (chidori.domain.records.Channel), never the spec
    public: dict[str, Any] = field(init=False)  # the spec as stored and shown
    # Compared only to tell an idempotent retry from a different job: without a key, none.
    fingerprint: str = field(init=False)
    result: tuple[Job, bool] | None = None
    error: BaseException | None = None
    done: threading.Event | None = None  # a thread's (submit)
    waiter: asyncio.Future[None] | None = None  # an event loop's (submit_async)

    def __post_init__(self) -> None:
        self.public = self.spec.public_dict()
        self.fingerprint = fingerprint_of(self.public) if self.idempotency_key else ""

    @property
    def owned_key(self) -> tuple[str, str] | None:
        """(owner, idempotency key): keys are one user's own, never shared between users."""
        return None if self.idempotency_key is None else (self.owner, self.idempotency_key)


def _resolve(futures: list[asyncio.Future[None]]) -> None:
    for future in futures:
        if not future.done():
            future.set_result(None)


class GroupCommitter:
    """Commits submissions in batches from one writer thread: whatever arrives while a commit
    runs goes into the next one. Each caller waits for its own result, so nothing is answered
    before it is durable, and the database sees one transaction per batch, not per request."""

    def __init__(
        self, write: Callable[[Sequence[_Submission]], None], max_batch: int = 256
    ) -> None:
        self._write = write
        self._max_batch = max_batch
        self._pending: queue.Queue[_Submission | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="group-commit", daemon=True)
                self._thread.start()

    def submit(self, item: _Submission) -> tuple[Job, bool]:
        item.done = threading.Event()
        self._start()
        self._pending.put(item)
        item.done.wait()
        return self._outcome(item)

    async def submit_async(self, item: _Submission) -> tuple[Job, bool]:
        """As `submit`, without holding a thread while the batch commits."""
        item.waiter = asyncio.get_running_loop().create_future()
        self._start()
        self._pending.put(item)
        await item.waiter
        return self._outcome(item)

    @staticmethod
    def _outcome(item: _Submission) -> tuple[Job, bool]:
        if item.error is not None:
            raise item.error
        assert item.result is not None
        return item.result

    def close(self) -> None:
        if self._thread is not None:
            self._pending.put(None)
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self) -> None:
        while True:
            first = self._pending.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self._max_batch:
                try:
                    item = self._pending.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._pending.put(None)
                    break
                batch.append(item)
            self._commit(batch)

    def _commit(self, batch: list[_Submission]) -> None:
        try:
            self._write(batch)
        except Exception as exc:
            if len(batch) == 1:
                batch[0].error = exc
            else:
                # One bad submission must not sink the others: retry them one by one.
                for item in batch:
                    item.result = item.error = None
                    self._commit([item])
                return
        waiters: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
        for item in batch:
            if item.done is not None:
                item.done.set()
            if item.waiter is not None:
                waiters.setdefault(item.waiter.get_loop(), []).append(item.waiter)
        # One hand-over per event loop for the whole batch, not one per submission.
        for loop, futures in waiters.items():
            loop.call_soon_threadsafe(_resolve, futures)


class Store:
    """Jobs, attempts and events in one SQL database."""

    def __init__(self, read_engine: Engine, write_engine: Engine, clock: Clock = utcnow) -> None:
        self._read_engine = read_engine
        self._write_engine = write_engine
        self._clock = clock
        self._listeners: list[tuple[Callable[[int | None], None], bool]] = []
        self._listeners_lock = threading.Lock()
        self._dispatch_writer: DispatchWriter | None = None
        self._committer = GroupCommitter(self._write_submissions)
        self._write_lock: AbstractContextManager[object] = (
            threading.Lock() if write_engine.dialect.name == "sqlite" else nullcontext()
        )

    # ---- plumbing -------------------------------------------------------------------------

    def now(self) -> datetime:
        return self._clock()

    @property
    def dialect(self) -> str:
        return self._write_engine.dialect.name

    def subscribe(
        self, listener: Callable[[int | None], None], scheduling_only: bool = False
    ) -> None:
        """Call `listener(job_id)` after every committed change to a job, in this process.
        With `scheduling_only`, only after changes that may let a job start (a submission, a
        cancel, a limit change): the scheduler need not wake for a driver's start, say."""
        with self._listeners_lock:
            self._listeners.append((listener, scheduling_only))

    def _changed(self, job_ids: Sequence[int], wake_scheduler: bool = True) -> None:
        # Listeners only need to know that something changed: once per commit, however many
        # jobs it touched (a group commit may hold hundreds).
        if job_ids:
            for listener, scheduling_only in list(self._listeners):
                if wake_scheduler or not scheduling_only:
                    listener(job_ids[0])

    def notify_change(self, job_ids: Sequence[int] = (), wake_scheduler: bool = True) -> None:
        """Tell listeners that jobs (or, with no ids, admission settings) changed."""
        if job_ids:
            self._changed(job_ids, wake_scheduler)
        else:
            for listener, _ in list(self._listeners):
                listener(None)

    @contextmanager
    def reading(self) -> Iterator[Session]:
        try:
            with Session(self._read_engine, expire_on_commit=False) as session, session.begin():
                yield session
        except (OperationalError, SAInterfaceError) as exc:
            raise StoreUnavailable(f"database unavailable: {exc.orig}") from exc

    @contextmanager
    def writing(self) -> Iterator[Session]:
        # SQLite has one writer at a time; its busy handler makes waiting writers sleep and
        # poll (up to 100 ms a nap). Queueing this process's writers on a lock instead hands
        # the database over the moment it is free.
        with self._write_lock:
            try:
                with (
                    Session(self._write_engine, expire_on_commit=False) as session,
                    session.begin(),
                ):
                    yield session
            except (OperationalError, SAInterfaceError) as exc:
                raise StoreUnavailable(f"database unavailable: {exc.orig}") from exc

    @contextmanager
    def connecting(self) -> Iterator[Connection]:
        """A write transaction on a plain connection, for the statements run for every job
        (no ORM session to set up; see the prebuilt statements at the top)."""
        with self._write_lock:
            try:
                with self._write_engine.begin() as conn:
                    yield conn
            except (OperationalError, SAInterfaceError) as exc:
                raise StoreUnavailable(f"database unavailable: {exc.orig}") from exc

    def migrate(self, revision: str = "head") -> None:
        """Bring the schema to `revision` (default the newest; Alembic). Safe with several
        replicas."""
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with self._write_engine.connect() as conn:
            sqlite = self.dialect == "sqlite"
            if sqlite:
                # SQLite changes a constraint by rebuilding the table (Alembic's batch mode),
                # and dropping the old `jobs` would cascade to every attempt and event. The
                # pragma only takes effect outside a transaction: straight to the driver.
                conn.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
            try:
                if self.dialect == "postgresql":
                    # Replicas starting together must not run the same migration twice.
                    conn.execute(text("SELECT pg_advisory_xact_lock(4242001)"))
                config.attributes["connection"] = conn
                command.upgrade(config, revision)
                if sqlite:
                    broken = conn.execute(text("PRAGMA foreign_key_check")).first()
                    if broken is not None:
                        raise RuntimeError(f"migration broke a foreign key: {tuple(broken)}")
                conn.commit()
            finally:
                if sqlite:
                    conn.rollback()
                    conn.connection.driver_connection.execute("PRAGMA foreign_keys=ON")  # type: ignore[union-attr]

    def ping(self) -> None:
        """Raise StoreUnavailable unless the database answers."""
        with self.reading() as session:
            session.execute(text("SELECT 1"))

    def dispose(self) -> None:
        self._committer.close()
        self._read_engine.dispose()
        self._write_engine.dispose()

    def _add_event(
        self,
        session: Session,
        job_id: int,
        type_: str,
        actor: str,
        *,
        state: str | None = None,
        reason: str | None = None,
        attempt: int | None = None,
        source: str | None = None,
    ) -> None:
        session.add(
            EventRow(
                job_id=job_id,
                attempt=attempt,
                time=self._clock(),
                type=type_,
                state=state,
                actor=actor,
                reason=reason,
                source=source,
            )
        )

    # ---- submission and reads -------------------------------------------------------------

    def create_job(
        self,
        spec: JobSpec,
        owner: str,
        *,
        team: str | None = None,
        idempotency_key: str | None = None,
        source: str | None = None,
        channel: str | None = None,
    ) -> tuple[Job, bool]:
        """Store a new QUEUED job with its first event (and its dispatch message, when a
        dispatch writer is set) in one transaction. Returns (job, created).

        With an idempotency key `owner` already used for the same spec, returns the first job
        and False; for a different spec raises Conflict. Keys are per owner: another user's
        key is not seen at all. `channel` marks the door the job came in through (set by the
        server only). Submissions arriving together are committed together (group commit),
        each still answered only once it is durable.
        """
        item = _Submission(spec, owner, team, idempotency_key, source, channel)
        try:
            return self._committer.submit(item)
        except IntegrityError:
            if idempotency_key is None:
                raise
            # Another replica stored the same key between our check and our insert.
            return self._replay(owner, idempotency_key, item.fingerprint)

    async def create_job_async(
        self,
        spec: JobSpec,
        owner: str,
        *,
        team: str | None = None,
        idempotency_key: str | None = None,
        source: str | None = None,
        channel: str | None = None,
    ) -> tuple[Job, bool]:
        """`create_job` for the event loop: waits for the group commit without a thread."""
        item = _Submission(spec, owner, team, idempotency_key, source, channel)
        try:
            return await self._committer.submit_async(item)
        except IntegrityError:
            if idempotency_key is None:
                raise
            return await asyncio.to_thread(self._replay, owner, idempotency_key, item.fingerprint)

    def _replay(self, owner: str, key: str, fingerprint: str) -> tuple[Job, bool]:
        with self.reading() as session:
            row = session.scalars(
                select(JobRow).where(JobRow.owner == owner, JobRow.idempotency_key == key)
            ).first()
            if row is None:
                raise StoreUnavailable("could not store the job; retry")
            if row.spec_hash != fingerprint:
                raise Conflict(f"Idempotency-Key {key!r} was already used for a different job")
            return job_record(row), False

    def set_dispatch_writer(self, writer: DispatchWriter | None) -> None:
        """Called inside each submission's transaction to add its dispatch message."""
        self._dispatch_writer = writer

    def _write_submissions(self, batch: Sequence[_Submission]) -> None:
        """One transaction for a batch of submissions; sets each one's result or error."""
        now = self._clock()
        with self.writing() as session:
            # Keys are per owner: (owner, key) pairs, looked up by both columns.
            owned = {b.owned_key for b in batch if b.owned_key is not None}
            by_key: dict[tuple[str, str], JobRow] = {}
            if owned:
                found = session.scalars(
                    select(JobRow).where(
                        JobRow.idempotency_key.in_({key for _, key in owned}),
                        JobRow.owner.in_({owner for owner, _ in owned}),
                    )
                )
                by_key = {
                    (row.owner, row.idempotency_key): row
                    for row in found
                    if row.idempotency_key is not None
                }
            fresh: list[_Submission] = []
            replays: list[tuple[_Submission, JobRow]] = []
            for item in batch:
                owned_key = item.owned_key
                twin = by_key.get(owned_key) if owned_key else None
                if twin is not None:
                    if twin.spec_hash != item.fingerprint:
                        item.error = Conflict(
                            f"Idempotency-Key {item.idempotency_key!r} was already used for a "
                            "different job"
                        )
                    else:
                        replays.append((item, twin))
                    continue
                fresh.append(item)
            # The same owner's key twice in one batch: the second is answered from the first.
            firsts = [i for i in fresh if not self._repeats_key(i, fresh)]
            # Core inserts (one statement per table for the whole batch): the ORM's unit of
            # work costs more CPU than the database does at these rates.
            conn = session.connection()
            values = [self._row_values(item, now) for item in firsts]
            if not values:
                ids = []
            elif self.dialect == "postgresql":
                ids = _insert_jobs_pipelined(conn, values)
            else:
                ids = list(conn.execute(_INSERT_JOBS, values).scalars())
            labels = [
                {"job_id": job_id, "key": key, "value": value}
                for job_id, item in zip(ids, firsts, strict=True)
                for key, value in item.spec.labels.items()
            ]
            if labels:
                conn.execute(_INSERT_LABELS, labels)
            if ids:
                conn.execute(
                    INSERT_EVENT,
                    [
                        {
                            "job_id": job_id,
                            "attempt": None,
                            "time": now,
                            "type": "state",
                            "state": "QUEUED",
                            "actor": item.owner,
                            "reason": "submitted",
                            "source": item.source,
                        }
                        for job_id, item in zip(ids, firsts, strict=True)
                    ],
                )
            if self._dispatch_writer is not None and ids:
                # A message only tells schedulers to look at the store (chidori.queues.dispatch):
                # one per job queue per commit, naming its newest job, wakes them as well as
                # one per job would, at a fraction of the broker traffic.
                newest = {item.spec.queue: job_id for job_id, item in zip(ids, firsts, strict=True)}
                self._dispatch_writer(
                    session, [Message(job_id, queue) for queue, job_id in newest.items()], now
                )
            created: list[Job] = []
            by_new_key: dict[tuple[str, str], tuple[_Submission, Job]] = {}
            for job_id, item, row_values in zip(ids, firsts, values, strict=True):
                job = _new_job(job_id, item.spec, row_values)
                created.append(job)
                item.result = (job, True)
                if item.owned_key is not None:
                    by_new_key[item.owned_key] = (item, job)
            first_ids = {id(item) for item in firsts}
            for item in fresh:
                if id(item) not in first_ids:
                    assert item.owned_key is not None
                    first, twin_job = by_new_key[item.owned_key]
                    if first.fingerprint != item.fingerprint:
                        item.error = Conflict(
                            f"Idempotency-Key {item.idempotency_key!r} was already used for a "
                            "different job"
                        )
                    else:
                        item.result = (twin_job, False)
            for item, row in replays:
                item.result = (job_record(row), False)
        self._changed([job.id for job in created])

    @staticmethod
    def _repeats_key(item: _Submission, batch: Sequence[_Submission]) -> bool:
        """True if an earlier submission of `batch` carries the same owner's idempotency key."""
        key = item.owned_key
        if key is None:
            return False
        for other in batch:
            if other is item:
                return False
            if other.owned_key == key:
                return True
        return False

    @staticmethod
    def _row_values(item: _Submission, now: datetime) -> dict[str, Any]:
        spec = item.spec
        demand = spec_demand(spec)
        return dict(
            name=spec.display_name[:200],
            state=JobState.QUEUED.value,
            kind=spec.kind,
            cluster=spec.cluster,
            queue=spec.queue,
            priority=spec.priority,
            schema_name=spec.schema_name,
            table_name=spec.table_name,
            owner=item.owner,
            team=item.team,
            spec=item.public,
            spec_hash=item.fingerprint,
            idempotency_key=item.idempotency_key,
            channel=item.channel,
            created_at=now,
            updated_at=now,
            attempts=0,
            failed_attempts=0,
            lost_attempts=0,
            cancel_requested=False,
            timeout_seconds=spec.timeout,
            demand_memory_mb=demand.memory_mb,
            demand_cores=demand.cores,
        )

    def get_job(self, job_id: int) -> Job:
        with self.reading() as session:
            row = session.get(JobRow, job_id)
            if row is None:
                raise NotFound(f"job {job_id} not found")
            return job_record(row)

    def list_jobs(self, query: JobQuery) -> Page:
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
        with self.reading() as session:
            rows = list(session.scalars(stmt))
        items = [job_record(row) for row in rows[: query.limit]]
        next_id = items[-1].id if len(rows) > query.limit else None
        return Page(items=items, next_before_id=next_id)

    def list_events(self, job_id: int) -> list[Event]:
        with self.reading() as session:
            if session.get(JobRow, job_id) is None:
                raise NotFound(f"job {job_id} not found")
            rows = session.scalars(
                select(EventRow).where(EventRow.job_id == job_id).order_by(EventRow.id)
            )
            return [_event(row) for row in rows]

    def list_attempts(self, job_id: int) -> list[Attempt]:
        with self.reading() as session:
            if session.get(JobRow, job_id) is None:
                raise NotFound(f"job {job_id} not found")
            rows = session.scalars(
                select(AttemptRow).where(AttemptRow.job_id == job_id).order_by(AttemptRow.number)
            )
            return [_attempt(row) for row in rows]

    # ---- scheduling -----------------------------------------------------------------------

    def claim_next(
        self,
        server_id: str,
        host: str,
        clusters: Sequence[str],
        max_running: int | None,
        lease_seconds: float,
    ) -> Claim | None:
        """Admit the next QUEUED job (highest priority, then oldest) if a slot is free.

        Creates its attempt in STARTING, owned by `server_id` with a fresh lease. Returns None
        when nothing is waiting or no slot is free.
        """
        now = self._clock()
        with self.writing() as session:
            if max_running is not None:
                active = session.scalar(
                    select(func.count()).select_from(JobRow).where(JobRow.state.in_(_ACTIVE_JOB))
                )
                if (active or 0) >= max_running:
                    return None
            candidate = session.scalars(
                select(JobRow)
                .where(
                    JobRow.state == JobState.QUEUED.value,
                    JobRow.cluster.in_(list(clusters)),
                    or_(JobRow.not_before.is_(None), JobRow.not_before <= now),
                )
                .order_by(JobRow.priority.desc(), JobRow.id)
                .limit(1)
                .with_for_update(skip_locked=True)
            ).first()
            if candidate is None:
                return None
            claim = claim_in_session(session, candidate.id, server_id, host, lease_seconds, now)
            if claim is None:
                return None

        self._changed([claim.job.id])
        return claim

    def mark_running(
        self, job_id: int, attempt: int, pid: int, log_path: str, actor: str, ready: bool = False
    ) -> bool:
        """The driver process started (`ready`: and the application can run at once: a warm
        driver took it, or no Spark session is needed). False if this attempt is no longer
        current (fenced)."""
        now = self._clock()
        keys = {
            "b_job": job_id,
            "b_attempt": attempt,
            "b_now": now,
            "b_ready": now if ready else None,
        }
        with self.connecting() as conn:
            moved = conn.execute(_RUN_ATTEMPT, {**keys, "b_pid": pid, "b_log": log_path})
            if moved.rowcount != 1:
                return False
            conn.execute(_RUN_JOB, keys)
            conn.execute(
                INSERT_EVENT,
                {
                    "job_id": job_id,
                    "attempt": attempt,
                    "time": now,
                    "type": "state",
                    "state": "RUNNING",
                    "actor": actor,
                    "reason": f"driver process {pid} started",
                },
            )
        self._changed([job_id], wake_scheduler=False)
        return True

    def set_start(self, job_id: int, attempt: int, start_type: str, note: str | None) -> None:
        """Record how an attempt is started (a warm driver refused it: it starts cold)."""
        with self.writing() as session:
            session.execute(
                update(AttemptRow)
                .where(AttemptRow.job_id == job_id, AttemptRow.number == attempt)
                .values(start_type=start_type, start_note=note)
                .execution_options(synchronize_session=False)
            )
            session.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.attempts == attempt)
                .values(start_type=start_type, start_note=note)
                .execution_options(synchronize_session=False)
            )

    def set_app_id(self, job_id: int, attempt: int, app_id: str, actor: str) -> None:
        with self.writing() as session:
            session.execute(
                update(AttemptRow)
                .where(AttemptRow.job_id == job_id, AttemptRow.number == attempt)
                .values(
                    spark_app_id=app_id,
                    # The id is printed once the SparkContext is up: the cold start is over.
                    ready_at=func.coalesce(AttemptRow.ready_at, self._clock()),
                )
                .execution_options(synchronize_session=False)
            )
            session.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.attempts == attempt)
                .values(
                    spark_app_id=app_id,
                    updated_at=self._clock(),
                    ready_at=func.coalesce(JobRow.ready_at, self._clock()),
                )
                .execution_options(synchronize_session=False)
            )
            self._add_event(
                session,
                job_id,
                "spark_app",
                actor,
                reason=f"Spark application {app_id}",
                attempt=attempt,
            )
        self._changed([job_id], wake_scheduler=False)

    def finish_attempt(
        self, job_id: int, attempt: int, outcome: Outcome, actor: str, lost_retry_limit: int = 3
    ) -> Job | None:
        """Record how an attempt ended and move the job on: terminal, or back to QUEUED for a
        retry. Returns the job, or None if the attempt was already finished (fenced)."""
        with self.connecting() as conn:
            job = self.finish_in(conn, Ending(job_id, attempt, outcome, actor, lost_retry_limit))
        if job is not None:
            # No wake-up for the scheduler: the one that records an end admits right after it
            # (a driver's exit, or the scheduler's own step).
            self._changed([job_id], wake_scheduler=False)
        return job

    def finish_in(self, conn: Connection, ending: Ending) -> Job | None:
        """`finish_attempt` inside the caller's write transaction. The caller tells listeners
        (`notify_change`, without waking the scheduler) once it has committed."""
        job_id, attempt, outcome = ending.job_id, ending.attempt, ending.outcome
        now = self._clock()
        moved = conn.execute(
            _END_ATTEMPT,
            {
                "b_job": job_id,
                "b_attempt": attempt,
                "b_state": outcome.state.value,
                "b_now": now,
                "b_code": outcome.exit_code,
                "b_reason": outcome.reason,
            },
        )
        if moved.rowcount != 1:
            return None
        current = conn.execute(_JOB_TO_FINISH, {"b_job": job_id}).one_or_none()
        if current is None or current.attempts != attempt or current.state not in _ACTIVE_JOB:
            return None
        spec = JobSpec.from_stored(current.spec)
        step = _next_state(
            outcome,
            bool(current.cancel_requested),
            current.failed_attempts,
            current.lost_attempts,
            spec.max_retries,
            ending.lost_retry_limit,
            spec.rerun_lost,
        )
        retry = step.state is JobState.QUEUED
        backoff = retry and outcome.state is AttemptState.FAILED
        row = conn.execute(
            _END_JOB,
            {
                "b_job": job_id,
                "b_state": step.state.value,
                "b_reason": step.reason,
                "b_code": outcome.exit_code,
                "b_now": now,
                "b_finished": None if retry else now,
                "b_not_before": now + retry_backoff(step.failed) if backoff else None,
                "b_failed": step.failed,
                "b_lost": step.lost,
            },
        ).one()
        event = {"job_id": job_id, "attempt": attempt, "time": now, "actor": ending.actor}
        conn.execute(
            INSERT_EVENT,
            [
                {**event, "type": "attempt", "state": outcome.state.value,
                 "reason": outcome.reason},
                {**event, "type": "state", "state": step.state.value, "reason": step.reason},
            ],
        )  # fmt: skip
        return job_record(row)

    def request_cancel(self, job_id: int, actor: str, source: str | None = None) -> Job:
        """Cancel a job: a QUEUED job is CANCELLED at once; an admitted or running one is
        flagged, and the replica hosting its driver stops it. Finished jobs are left alone."""
        now = self._clock()
        with self.writing() as session:
            row = session.get(JobRow, job_id, with_for_update=True)
            if row is None:
                raise NotFound(f"job {job_id} not found")
            if row.state == JobState.QUEUED.value:
                row.state = JobState.CANCELLED.value
                row.reason = f"cancelled by {actor}"
                row.finished_at = now
                row.updated_at = now
                row.cancel_requested = True
                self._add_event(
                    session,
                    job_id,
                    "state",
                    actor,
                    state="CANCELLED",
                    reason=row.reason,
                    source=source,
                )
            elif row.state in _ACTIVE_JOB and not row.cancel_requested:
                row.cancel_requested = True
                row.updated_at = now
                self._add_event(
                    session,
                    job_id,
                    "cancel_requested",
                    actor,
                    reason=f"cancel requested by {actor}",
                    attempt=row.attempts,
                    source=source,
                )
            session.flush()
            job = job_record(row)
        # No wake-up for the scheduler: the one that records an end admits right after it
        # (a driver's exit, or the scheduler's own step).
        self._changed([job_id], wake_scheduler=False)
        return job

    def cancel_requested_attempts(self, server_id: str) -> list[Attempt]:
        """Active attempts hosted by `server_id` whose job was asked to cancel."""
        with self.reading() as session:
            rows = session.connection().execute(_CANCEL_REQUESTED, {"b_server": server_id})
            return [_attempt(row) for row in rows]

    def active_attempts(self, server_id: str | None = None) -> list[Attempt]:
        """Attempts still STARTING or RUNNING, of one server or of all."""
        stmt = select(AttemptRow).where(AttemptRow.state.in_(_ACTIVE_ATTEMPT))
        if server_id is not None:
            stmt = stmt.where(AttemptRow.server_id == server_id)
        with self.reading() as session:
            return [_attempt(row) for row in session.scalars(stmt)]

    def expired_attempts(self) -> list[Attempt]:
        """Active attempts whose lease ran out: their host stopped renewing."""
        now = self._clock()
        with self.reading() as session:
            rows = session.scalars(
                select(AttemptRow).where(
                    AttemptRow.state.in_(_ACTIVE_ATTEMPT), AttemptRow.lease_expires_at < now
                )
            )
            return [_attempt(row) for row in rows]

    # ---- server replicas --------------------------------------------------------------------

    def register_server(self, server_id: str, host: str, pid: int, version: str) -> None:
        now = self._clock()
        with self.writing() as session:
            session.add(
                ServerRow(
                    id=server_id,
                    host=host,
                    pid=pid,
                    version=version,
                    started_at=now,
                    heartbeat_at=now,
                )
            )

    def heartbeat(self, server_id: str, lease_seconds: float) -> set[tuple[int, int]]:
        """Renew this server's heartbeat and the leases of its active attempts, in one
        transaction. Returns the (job id, attempt) pairs it still owns."""
        now = self._clock()
        with self.writing() as session:
            session.execute(
                update(ServerRow)
                .where(ServerRow.id == server_id)
                .values(heartbeat_at=now, stopped_at=None)
                .execution_options(synchronize_session=False)
            )
            session.execute(
                update(AttemptRow)
                .where(AttemptRow.server_id == server_id, AttemptRow.state.in_(_ACTIVE_ATTEMPT))
                .values(lease_expires_at=now + timedelta(seconds=lease_seconds))
                .execution_options(synchronize_session=False)
            )
            owned = session.execute(
                select(AttemptRow.job_id, AttemptRow.number).where(
                    AttemptRow.server_id == server_id, AttemptRow.state.in_(_ACTIVE_ATTEMPT)
                )
            ).all()
        return {(job_id, number) for job_id, number in owned}

    def server_stopped(self, server_id: str) -> None:
        with self.writing() as session:
            session.execute(
                update(ServerRow)
                .where(ServerRow.id == server_id)
                .values(stopped_at=self._clock())
                .execution_options(synchronize_session=False)
            )

    def list_servers(self, include_stopped: bool = False) -> list[Server]:
        stmt = select(ServerRow).order_by(ServerRow.started_at)
        if not include_stopped:
            stmt = stmt.where(ServerRow.stopped_at.is_(None))
        with self.reading() as session:
            return [
                Server(r.id, r.host, r.pid, r.version, r.started_at, r.heartbeat_at, r.stopped_at)
                for r in session.scalars(stmt)
            ]

    # ---- uploads ----------------------------------------------------------------------------

    def record_upload(self, uri: str, user: str, team: str | None, size: int) -> None:
        """Remember that `user` (in `team`) stored the upload `uri`; once per user and URI."""
        known = select(UploadRow.id).where(UploadRow.uri == uri, UploadRow.uploaded_by == user)
        try:
            with self.writing() as session:
                if session.scalar(known) is None:
                    session.add(
                        UploadRow(
                            uri=uri,
                            uploaded_by=user,
                            team=team,
                            size=size,
                            created_at=self._clock(),
                        )
                    )
        except IntegrityError:
            pass  # the same user stored it at the same moment elsewhere: recorded once

    def upload_known(self, uri: str, user: str, team: str | None) -> bool:
        """Whether `user` or anyone who stored it in `team` (when not None) stored `uri`."""
        who = UploadRow.uploaded_by == user
        if team is not None:
            who = or_(who, UploadRow.team == team)
        with self.reading() as session:
            found = session.scalar(select(UploadRow.id).where(UploadRow.uri == uri, who).limit(1))
            return found is not None
