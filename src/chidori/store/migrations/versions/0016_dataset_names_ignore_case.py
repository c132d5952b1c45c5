"""Dataset filters ignore case: the `(schema, table, id)` index is on the lower-cased names.

`chidori.store.job_list` and `chidori.store.datasets` compare `lower(schema_name)` and
`lower(table_name)` with the lower-cased filter, which both SQLite and PostgreSQL look up in an
index on those expressions (the plain `ix_jobs_dataset` it replaces could not serve them).

Revision ID: 0016
Revises: 0014
"""

from alembic import op
from sqlalchemy import text

revision = "0016"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_jobs_dataset_ci",
        "jobs",
        [text("lower(schema_name)"), text("lower(table_name)"), "id"],
    )
    op.drop_index("ix_jobs_dataset", "jobs")


def downgrade() -> None:
    op.create_index("ix_jobs_dataset", "jobs", ["schema_name", "table_name", "id"])
    op.drop_index("ix_jobs_dataset_ci", "jobs")
