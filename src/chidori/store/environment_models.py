"""Tables of per-job Python environments (chidori.store.environments)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Float, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from chidori.store.models import Base, UTCDateTime


class EnvironmentRow(Base):
    """One built environment, by key (the hash of its lock, Python version and platform).
    Its use count is not stored: it is the number of unfinished jobs whose `job_environments`
    row names it, read when pruning, so it can never drift from the jobs themselves."""

    __tablename__ = "environments"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    python: Mapped[str] = mapped_column(String(32))
    platform: Mapped[str] = mapped_column(String(64))
    packages: Mapped[dict[str, Any]] = mapped_column(JSON)  # {name: version}
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    build_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    built_by: Mapped[str] = mapped_column(String(128))  # the server that built it first
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_environments_last_used_at", "last_used_at"),)


class JobEnvironmentRow(Base):
    """A job's environment: claimed by the server preparing it (`preparing`), then `ready`
    with its lock and key, or `failed` (the job failed with the resolver's message)."""

    __tablename__ = "job_environments"

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    server_id: Mapped[str] = mapped_column(String(128))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    env_key: Mapped[str | None] = mapped_column(String(64))
    lock: Mapped[str | None] = mapped_column(Text)  # the resolved `name==version` lines
    log: Mapped[str | None] = mapped_column(Text)  # resolution and build output

    __table_args__ = (Index("ix_job_environments_env_key", "env_key"),)


class BaseEnvironmentRow(Base):
    """A named, pre-built environment an admin keeps (never pruned while it exists)."""

    __tablename__ = "base_environments"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    requirements: Mapped[list[str]] = mapped_column(JSON)
    lock: Mapped[str] = mapped_column(Text)
    env_key: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
