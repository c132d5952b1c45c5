"""Livy interactive sessions and their statements.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

from chidori.store.models import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "livy_sessions",
        sa.Column(
            "job_id",
            sa.Integer,
            sa.ForeignKey("jobs.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("proxy_user", sa.String(128)),
        sa.Column("ready_attempt", sa.Integer),
    )
    op.create_table(
        "livy_statements",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "job_id", sa.Integer, sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("code", sa.Text, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempt", sa.Integer),
        sa.Column("output", sa.JSON),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("started_at", UTCDateTime),
        sa.Column("completed_at", UTCDateTime),
        sa.UniqueConstraint("job_id", "number", name="uq_livy_statements_job_number"),
    )
    op.create_index("ix_livy_statements_job_state", "livy_statements", ["job_id", "state"])


def downgrade() -> None:
    op.drop_index("ix_livy_statements_job_state", "livy_statements")
    op.drop_table("livy_statements")
    op.drop_table("livy_sessions")
