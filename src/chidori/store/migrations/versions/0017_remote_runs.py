"""Remote clusters: an attempt keeps the service's run id and the run's page.

Revision ID: 0017
Revises: 0016
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN, as 0014 does (no batch rebuild of the table on SQLite).
    op.add_column("attempts", sa.Column("remote_run_id", sa.String(256)))
    op.add_column("attempts", sa.Column("remote_url", sa.Text))


def downgrade() -> None:
    op.drop_column("attempts", "remote_url")
    op.drop_column("attempts", "remote_run_id")
