"""SQLAlchemy tables. The store is the source of truth: jobs, attempts, events."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every database (SQLite keeps no zone of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, _dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class JobRow(Base):
    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16))
    cluster: Mapped[str] = mapped_column(String(128))
    queue: Mapped[str] = mapped_column(String(128))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    schema_name: Mapped[str | None] = mapped_column(String(256))
    table_name: Mapped[str | None] = mapped_column(String(256))
    owner: Mapped[str] = mapped_column(String(128))
    team: Mapped[str | None] = mapped_column(String(128))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    # For telling an idempotent retry from a different job; empty for jobs without a key.
    spec_hash: Mapped[str] = mapped_column(String(64))
    # Unique per owner (uq_jobs_owner_idempotency_key): one user's key never reaches another's.
    idempotency_key: Mapped[str | None] = mapped_column(String(256))
    # The door the server took the job in through (chidori.domain.records.Channel), set by the
    # server and never from the spec: None for the API, Livy and the UI.
    channel: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    admitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # How the current attempt started (see AttemptRow): shown per job without a join.
    start_type: Mapped[str | None] = mapped_column(String(8))
    start_note: Mapped[str | None] = mapped_column(Text)
    ready_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    failed_attempts: Mapped[int] = mapped_column(Integer, default=0)
    lost_attempts: Mapped[int] = mapped_column(Integer, default=0)
    reason: Mapped[str | None] = mapped_column(Text)
    spark_app_id: Mapped[str | None] = mapped_column(String(256))
    exit_code: Mapped[int | None] = mapped_column(Integer)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    timeout_seconds: Mapped[float | None] = mapped_column(Float)
    demand_memory_mb: Mapped[int] = mapped_column(Integer, default=0)
    demand_cores: Mapped[int] = mapped_column(Integer, default=0)
    wait_reason: Mapped[str | None] = mapped_column(Text)
    # The current attempt's Spark progress counts, with the attempt number they belong to
    # (`attempt`): what the jobs list shows without reading attempts (migration 0014).
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    __table_args__ = (
        Index("ix_jobs_dispatch", "state", "priority", "id"),
        # Date ranges page on (created_at, id) (chidori.store.job_list). Free text has a
        # trigram index made by migration 0012 only: pg_trgm's GIN ix_jobs_name_trgm on
        # lower(name) (when the extension may be installed), on SQLite the FTS5 table jobs_fts.
        Index("ix_jobs_created_at_id", "created_at", "id"),
        # Dataset filters ignore case (migration 0016): the index is on the lower-cased names.
        Index("ix_jobs_dataset_ci", text("lower(schema_name)"), text("lower(table_name)"), "id"),
        Index("ix_jobs_owner", "owner", "id"),
        Index("ix_jobs_team", "team", "id"),
        Index("ix_jobs_queue_state", "queue", "state", "priority", "id"),
        UniqueConstraint("owner", "idempotency_key", name="uq_jobs_owner_idempotency_key"),
    )


class JobLabelRow(Base):
    __tablename__ = "job_labels"

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(63), primary_key=True)
    value: Mapped[str] = mapped_column(String(256))

    __table_args__ = (Index("ix_job_labels_key_value", "key", "value"),)


class AttemptRow(Base):
    __tablename__ = "attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    server_id: Mapped[str] = mapped_column(String(128))
    host: Mapped[str] = mapped_column(String(256))
    pid: Mapped[int | None] = mapped_column(Integer)
    log_path: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lease_expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    spark_app_id: Mapped[str | None] = mapped_column(String(256))
    exit_code: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(Text)
    start_type: Mapped[str | None] = mapped_column(String(8))  # cold | warm
    start_note: Mapped[str | None] = mapped_column(Text)  # why cold, when a warm one was kept
    ready_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # Spark app up / handed over
    # Kubernetes clusters: the attempt's executor pods as last seen (name, node, phase, ...).
    executors: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    # Spark progress: the contract's counts, `updated_at` and `final` (stages: AttemptStagesRow).
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Remote clusters (livy, databricks, ...): the service's run id, stored before anything
    # relies on it (a replica adopting the attempt polls this run), and its page.
    remote_run_id: Mapped[str | None] = mapped_column(String(256))
    remote_url: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        UniqueConstraint("job_id", "number", name="uq_attempts_job_number"),
        Index("ix_attempts_state_lease", "state", "lease_expires_at"),
        Index("ix_attempts_server", "server_id", "state"),
    )


class AttemptStagesRow(Base):
    """An attempt's Spark stages (at most 500, newest last), apart so no attempts query
    carries them."""

    __tablename__ = "attempt_stages"

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    stages: Mapped[list[dict[str, Any]]] = mapped_column(JSON)


class EventRow(Base):
    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    attempt: Mapped[int | None] = mapped_column(Integer)
    time: Mapped[datetime] = mapped_column(UTCDateTime)
    type: Mapped[str] = mapped_column(String(32))
    state: Mapped[str | None] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str | None] = mapped_column(String(256))


class UserRow(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    team: Mapped[str | None] = mapped_column(String(128))
    clusters: Mapped[list[str] | None] = mapped_column(JSON)
    queues: Mapped[list[str] | None] = mapped_column(JSON)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class TokenRow(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The token whose caller made this one: revoking it revokes this one too.
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("api_tokens.id", ondelete="SET NULL"), index=True
    )


class UiSessionRow(Base):
    """A UI session (the cookie carries its secret id; only a hash of it is kept), so that
    signing out ends it for every copy of the cookie."""

    __tablename__ = "ui_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_name: Mapped[str] = mapped_column(String(128))
    token_id: Mapped[int | None] = mapped_column(Integer)  # None: the bootstrap token
    # For a session opened with the bootstrap token: which one (keyed by the session's secret
    # id); a rotated token no longer matches.
    bootstrap_mark: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AuditRow(Base):
    """State-changing calls that are not about one job (those are job events)."""

    __tablename__ = "audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    time: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str | None] = mapped_column(String(256))
    source: Mapped[str | None] = mapped_column(String(256))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class SettingRow(Base):
    """Settings an admin changes at run time (policy, later limits), as JSON documents."""

    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_by: Mapped[str] = mapped_column(String(128))


class QueueRow(Base):
    """A named queue: its rank against other queues, its fair-share weight, its quotas."""

    __tablename__ = "queues"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    weight: Mapped[float] = mapped_column(Float, default=1.0)
    max_running_jobs: Mapped[int | None] = mapped_column(Integer)
    max_memory_mb: Mapped[int | None] = mapped_column(Integer)
    max_cores: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class QueueMessageRow(Base):
    """The in-database dispatch queue (`CHIDORI_QUEUE_URL=db`)."""

    __tablename__ = "queue_messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(Integer)
    queue: Mapped[str] = mapped_column(String(128))
    available_at: Mapped[datetime] = mapped_column(UTCDateTime)
    deliveries: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_queue_messages_available", "available_at", "id"),)


class OutboxRow(Base):
    """Dispatch messages written with their job, published to an external broker afterwards."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(Integer)
    queue: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class WarmDriverRow(Base):
    """A driver started ahead of any job, holding its reservation until a job takes it over
    (the row is then deleted in the admitting transaction) or it is retired."""

    __tablename__ = "warm_drivers"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    server_id: Mapped[str] = mapped_column(String(128))
    cluster: Mapped[str] = mapped_column(String(128))
    memory_mb: Mapped[int] = mapped_column(Integer)
    cores: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))  # starting | idle | retiring
    pid: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_warm_drivers_server", "server_id", "state"),)


class ServerRow(Base):
    """A running (or once running) `chidori server` replica, and its last heartbeat."""

    __tablename__ = "servers"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    host: Mapped[str] = mapped_column(String(256))
    pid: Mapped[int] = mapped_column(Integer)
    version: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime)
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ShareRow(Base):
    """A share link: one job, or one dataset's history, readable without login until it
    expires or is revoked."""

    __tablename__ = "shares"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))
    job_id: Mapped[int | None] = mapped_column(Integer)
    schema_name: Mapped[str | None] = mapped_column(String(256))
    table_name: Mapped[str | None] = mapped_column(String(256))
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class LivySessionRow(Base):
    """A Livy interactive session: the job of kind `session` it runs as, and what only a
    session has (its default statement kind; which attempt's driver is ready)."""

    __tablename__ = "livy_sessions"

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # pyspark | sql | shared
    proxy_user: Mapped[str | None] = mapped_column(String(128))
    ready_attempt: Mapped[int | None] = mapped_column(Integer)


class LivyStatementRow(Base):
    """A statement of a Livy session, numbered from 0 within it (as Livy does)."""

    __tablename__ = "livy_statements"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    code: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(16))  # pyspark | sql
    # waiting | running | available | error | cancelling | cancelled
    state: Mapped[str] = mapped_column(String(16))
    attempt: Mapped[int | None] = mapped_column(Integer)  # the driver it was handed to
    output: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    submitted_by: Mapped[str | None] = mapped_column(String(128))  # the user who ran it

    __table_args__ = (
        UniqueConstraint("job_id", "number", name="uq_livy_statements_job_number"),
        Index("ix_livy_statements_job_state", "job_id", "state"),
    )


class UploadRow(Base):
    """Who stored an upload (`upload://SHA/NAME`), and in which team: the content is shared
    on disk, the right to use it is not (a job may name an upload only its owner's team, or
    its owner, stored)."""

    __tablename__ = "uploads"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uri: Mapped[str] = mapped_column(String(400))
    uploaded_by: Mapped[str] = mapped_column(String(128))
    team: Mapped[str | None] = mapped_column(String(128))
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        UniqueConstraint("uri", "uploaded_by", name="uq_uploads_uri_user"),
        Index("ix_uploads_uri_team", "uri", "team"),
    )
