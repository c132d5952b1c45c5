"""Base environments: named, pre-built Python environments admins keep.

Revision ID: 0019
Revises: 0018
"""

import sqlalchemy as sa
from alembic import op

from chidori.store.models import UTCDateTime

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "base_environments",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("requirements", sa.JSON, nullable=False),
        sa.Column("lock", sa.Text, nullable=False),
        sa.Column("env_key", sa.String(64), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("base_environments")
