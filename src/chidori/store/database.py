"""The database handle: engines, transactions, migrations and change listeners.

Every repository (`jobs`, `attempts`, `servers`, `uploads`, `admission`, `identity`, `shares`,
`sessions`) and the in-database queue take a `Database` and run their statements through
`reading()`, `writing()` or `connecting()`; database errors become `StoreUnavailable` here.
SQLite (the default) and PostgreSQL.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Dialect, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import InterfaceError as SAInterfaceError
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from chidori.domain.errors import StoreUnavailable

Clock = Callable[[], datetime]
MIGRATIONS = Path(__file__).parent / "migrations"
PG_STALL_LIMIT_MS = 5000


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


def open_database(url: str, clock: Clock = utcnow) -> Database:
    """Open (and create, for SQLite) the database at `url`. Does not migrate."""
    url = normalize_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        return Database(_sqlite_engine(url, "BEGIN"), _sqlite_engine(url, "BEGIN IMMEDIATE"), clock)
    engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # A replica frozen (or cut off) inside a transaction must not hold its locks for
        # long: PostgreSQL ends such a transaction, and nobody waits on a lock forever.
        with dbapi_conn.cursor() as cursor:
            cursor.execute(f"SET idle_in_transaction_session_timeout = '{PG_STALL_LIMIT_MS}'")
            cursor.execute(f"SET lock_timeout = '{PG_STALL_LIMIT_MS}'")
        dbapi_conn.commit()

    return Database(engine, engine, clock)


class LeanConnection:
    """A write transaction on a pooled DBAPI connection itself, for the statements run for
    every job (`chidori.store.statements.run`): no SQLAlchemy Connection or Session to set up
    and tear down around them."""

    __slots__ = ("dbapi", "dialect")

    def __init__(self, dialect: Dialect, dbapi: Any) -> None:
        self.dialect = dialect
        self.dbapi = dbapi


class Database:
    """One SQL database: a read engine and a write engine (the same one on PostgreSQL; on
    SQLite writes begin with BEGIN IMMEDIATE on their own engine), a clock, and the listeners
    told about committed changes in this process."""

    def __init__(self, read_engine: Engine, write_engine: Engine, clock: Clock = utcnow) -> None:
        self._read_engine = read_engine
        self._write_engine = write_engine
        self._clock = clock
        self._listeners: list[tuple[Callable[[int | None], None], bool]] = []
        self._listeners_lock = threading.Lock()
        self._closers: list[Callable[[], None]] = []
        self._unavailable_listeners: list[Callable[[str], None]] = []
        self._write_lock: AbstractContextManager[object] = (
            threading.Lock() if write_engine.dialect.name == "sqlite" else nullcontext()
        )

    def now(self) -> datetime:
        return self._clock()

    def on_unavailable(self, listener: Callable[[str], None]) -> None:
        """Call `listener("read")` or `listener("write")` for each database error translated
        to StoreUnavailable (the metrics count them)."""
        self._unavailable_listeners.append(listener)

    def _unavailable(self, operation: str, cause: object) -> StoreUnavailable:
        for listener in self._unavailable_listeners:
            listener(operation)
        return StoreUnavailable(f"database unavailable: {cause}")

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

    def notify_change(self, job_ids: Sequence[int] = (), wake_scheduler: bool = True) -> None:
        """Tell listeners, after a commit, that jobs (or, with no ids, admission settings)
        changed. Once per commit, however many jobs it touched (a group commit may hold
        hundreds): listeners only need to know that something changed."""
        for listener, scheduling_only in list(self._listeners):
            if not job_ids:
                listener(None)
            elif wake_scheduler or not scheduling_only:
                listener(job_ids[0])

    @contextmanager
    def reading(self) -> Iterator[Session]:
        try:
            with Session(self._read_engine, expire_on_commit=False) as session, session.begin():
                yield session
        except (OperationalError, SAInterfaceError) as exc:
            raise self._unavailable("read", exc.orig) from exc

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
                raise self._unavailable("write", exc.orig) from exc

    @contextmanager
    def connecting(self) -> Iterator[Connection]:
        """A write transaction on a plain connection, for the statements run for every job
        (no ORM session to set up; see the prebuilt statements at the top)."""
        with self._write_lock:
            try:
                with self._write_engine.begin() as conn:
                    yield conn
            except (OperationalError, SAInterfaceError) as exc:
                raise self._unavailable("write", exc.orig) from exc

    @contextmanager
    def lean(self) -> Iterator[LeanConnection]:
        """`connecting()` without SQLAlchemy's connection layer: BEGIN (IMMEDIATE on SQLite),
        the caller's statements through `statements.run`, COMMIT; errors become
        `StoreUnavailable` as everywhere else."""
        engine = self._write_engine
        dbapi_error = engine.dialect.loaded_dbapi.Error
        with self._write_lock:
            try:
                pooled = engine.raw_connection()
            except (OperationalError, SAInterfaceError) as exc:
                raise self._unavailable("write", exc.orig) from exc
            try:
                dbapi = pooled.driver_connection
                if engine.dialect.name == "sqlite":
                    dbapi.execute("BEGIN IMMEDIATE")  # type: ignore[union-attr]
                yield LeanConnection(engine.dialect, dbapi)
                dbapi.commit()  # type: ignore[union-attr]
            except BaseException as exc:
                try:
                    pooled.rollback()
                except Exception:
                    pooled.invalidate()  # the connection is gone: the pool opens a new one
                if isinstance(exc, (OperationalError, SAInterfaceError)):
                    raise self._unavailable("write", exc.orig) from exc
                if isinstance(exc, dbapi_error):
                    raise self._unavailable("write", exc) from exc
                raise
            finally:
                pooled.close()

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

    def on_dispose(self, close: Callable[[], None]) -> None:
        """Run `close` (a repository's writer thread, say) when the database is disposed."""
        self._closers.append(close)

    def dispose(self) -> None:
        for close in self._closers:
            close()
        self._read_engine.dispose()
        self._write_engine.dispose()
