"""Live Spark progress: each attempt's summary (the small counts) and its stage list, and the
current attempt's counts on the job (what the jobs list shows, read without a join).

The stage list has its own table so that no query over attempts carries it.

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN (no batch rebuild): rebuilding `jobs` on SQLite would drop the
    # jobs_fts triggers of migration 0012.
    op.add_column("attempts", sa.Column("progress", sa.JSON))
    op.add_column("jobs", sa.Column("progress", sa.JSON))
    op.create_table(
        "attempt_stages",
        sa.Column(
            "job_id", sa.Integer, sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("attempt", sa.Integer, primary_key=True),
        sa.Column("stages", sa.JSON, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("attempt_stages")
    with op.batch_alter_table("attempts") as batch:
        batch.drop_column("progress")
    op.drop_column("jobs", "progress")
