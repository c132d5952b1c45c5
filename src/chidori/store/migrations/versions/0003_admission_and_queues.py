"""Admission: job demands and wait reasons, named queues; dispatch queue tables.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

from chidori.store.models import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(
            sa.Column("demand_memory_mb", sa.Integer, nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("demand_cores", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("wait_reason", sa.Text))
        batch.create_index("ix_jobs_queue_state", ["queue", "state", "priority", "id"])
    op.create_table(
        "queues",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("weight", sa.Float, nullable=False),
        sa.Column("max_running_jobs", sa.Integer),
        sa.Column("max_memory_mb", sa.Integer),
        sa.Column("max_cores", sa.Integer),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "queue_messages",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.Integer, nullable=False),
        sa.Column("queue", sa.String(128), nullable=False),
        sa.Column("available_at", UTCDateTime, nullable=False),
        sa.Column("deliveries", sa.Integer, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_queue_messages_available", "queue_messages", ["available_at", "id"])
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.Integer, nullable=False),
        sa.Column("queue", sa.String(128), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("outbox")
    op.drop_table("queue_messages")
    op.drop_table("queues")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_queue_state")
        batch.drop_column("wait_reason")
        batch.drop_column("demand_cores")
        batch.drop_column("demand_memory_mb")
