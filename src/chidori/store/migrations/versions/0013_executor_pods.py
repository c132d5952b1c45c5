"""Kubernetes clusters: each attempt's executor pods as last seen.

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("attempts") as batch:
        batch.add_column(sa.Column("executors", sa.JSON))


def downgrade() -> None:
    with op.batch_alter_table("attempts") as batch:
        batch.drop_column("executors")
