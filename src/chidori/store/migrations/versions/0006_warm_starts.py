"""Warm starts: how each attempt started, and the warm drivers each server keeps.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

from chidori.store.models import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("attempts") as batch:
        batch.add_column(sa.Column("start_type", sa.String(8)))
        batch.add_column(sa.Column("start_note", sa.Text))
        batch.add_column(sa.Column("ready_at", UTCDateTime))
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("start_type", sa.String(8)))
        batch.add_column(sa.Column("start_note", sa.Text))
        batch.add_column(sa.Column("ready_at", UTCDateTime))
    op.create_table(
        "warm_drivers",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("server_id", sa.String(128), nullable=False),
        sa.Column("cluster", sa.String(128), nullable=False),
        sa.Column("memory_mb", sa.Integer, nullable=False),
        sa.Column("cores", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("pid", sa.Integer),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_warm_drivers_server", "warm_drivers", ["server_id", "state"])


def downgrade() -> None:
    op.drop_index("ix_warm_drivers_server", "warm_drivers")
    op.drop_table("warm_drivers")
    for table in ("attempts", "jobs"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("ready_at")
            batch.drop_column("start_note")
            batch.drop_column("start_type")
