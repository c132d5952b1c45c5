"""Who ran each Livy statement.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("livy_statements") as batch:
        batch.add_column(sa.Column("submitted_by", sa.String(128)))


def downgrade() -> None:
    with op.batch_alter_table("livy_statements") as batch:
        batch.drop_column("submitted_by")
