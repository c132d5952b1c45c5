"""Per-job Python environments: built environments and each job's own.

Revision ID: 0018
Revises: 0017
"""

import sqlalchemy as sa
from alembic import op

from chidori.store.models import UTCDateTime

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "environments",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("python", sa.String(32), nullable=False),
        sa.Column("platform", sa.String(64), nullable=False),
        sa.Column("packages", sa.JSON, nullable=False),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("build_seconds", sa.Float, nullable=False),
        sa.Column("built_by", sa.String(128), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("last_used_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_environments_last_used_at", "environments", ["last_used_at"])
    op.create_table(
        "job_environments",
        sa.Column(
            "job_id",
            sa.Integer,
            sa.ForeignKey("jobs.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("server_id", sa.String(128), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("env_key", sa.String(64)),
        sa.Column("lock", sa.Text),
        sa.Column("log", sa.Text),
    )
    op.create_index("ix_job_environments_env_key", "job_environments", ["env_key"])
    # Jobs held for their environment (or waiting out a retry backoff) are few: a partial
    # index finds them without a scan of every queued job, and costs nothing for the rest.
    op.create_index(
        "ix_jobs_not_before",
        "jobs",
        ["not_before"],
        sqlite_where=sa.text("not_before IS NOT NULL"),
        postgresql_where=sa.text("not_before IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_not_before", "jobs")
    op.drop_index("ix_job_environments_env_key", "job_environments")
    op.drop_table("job_environments")
    op.drop_index("ix_environments_last_used_at", "environments")
    op.drop_table("environments")
