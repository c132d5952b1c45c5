"""Idempotency keys unique per owner, not across users; the channel a job came in through
(set by the server); who stored each upload.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

from chidori.store.models import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# 0001 left the key's UNIQUE unnamed: PostgreSQL named it itself, SQLite not at all. Batch
# mode (SQLite rebuilds the table) names an unnamed one by this convention so it can drop it.
_NAMING = {"uq": "uq_%(table_name)s_%(column_0_name)s"}
_OLD_UNIQUE = "uq_jobs_idempotency_key"


def _global_key_constraints() -> list[str]:
    found = sa.inspect(op.get_bind()).get_unique_constraints("jobs")
    return [c["name"] or _OLD_UNIQUE for c in found if c["column_names"] == ["idempotency_key"]]


def upgrade() -> None:
    old = _global_key_constraints()
    with op.batch_alter_table("jobs", naming_convention=_NAMING) as batch:
        for name in old:
            batch.drop_constraint(name, type_="unique")
        batch.add_column(sa.Column("channel", sa.String(16)))
        batch.create_unique_constraint(
            "uq_jobs_owner_idempotency_key", ["owner", "idempotency_key"]
        )
    op.create_table(
        "uploads",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("uri", sa.String(400), nullable=False),
        sa.Column("uploaded_by", sa.String(128), nullable=False),
        sa.Column("team", sa.String(128)),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("uri", "uploaded_by", name="uq_uploads_uri_user"),
    )
    op.create_index("ix_uploads_uri_team", "uploads", ["uri", "team"])


def downgrade() -> None:
    op.drop_index("ix_uploads_uri_team", "uploads")
    op.drop_table("uploads")
    # Keys that only differ by owner cannot all survive a global UNIQUE: keep the oldest.
    op.execute(
        "UPDATE jobs SET idempotency_key = NULL WHERE idempotency_key IS NOT NULL AND id NOT IN "
        "(SELECT MIN(id) FROM jobs WHERE idempotency_key IS NOT NULL GROUP BY idempotency_key)"
    )
    with op.batch_alter_table("jobs") as batch:
        batch.drop_constraint("uq_jobs_owner_idempotency_key", type_="unique")
        batch.drop_column("channel")
        batch.create_unique_constraint(_OLD_UNIQUE, ["idempotency_key"])
