"""The jobs list at a million jobs: `(created_at, id)` for date ranges (the keyset of
`chidori.store.job_list`), and a trigram index for free-text search: a `pg_trgm` GIN index on
`lower(name)` on PostgreSQL, an FTS5 table (trigram tokenizer) kept in sync by triggers on
SQLite. That table holds only which jobs have each trigram (`detail=none, columnsize=0`: no
positions, no sizes; the list asks for single trigrams and checks with `LIKE`), which makes it a
third of the size of a full one and each insert's share of it about a sixth cheaper.

Both text indexes are optional: where PostgreSQL refuses `CREATE EXTENSION pg_trgm` (a user
without the right) or SQLite lacks FTS5's trigram tokenizer (before 3.34), the migration logs
a warning and goes on, and text search scans the table as before.

SQLite drops a table's triggers with the table: a later migration that rebuilds `jobs` (Alembic
batch mode) must create the `jobs_fts_*` triggers again (and rebuild `jobs_fts`).

Revision ID: 0012
Revises: 0011
"""

import logging

from alembic import op
from sqlalchemy import exc, text

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

log = logging.getLogger("chidori.store.migrations")

_SQLITE_FTS = [
    "CREATE VIRTUAL TABLE jobs_fts USING fts5("
    "name, content='jobs', content_rowid='id', tokenize='trigram', detail=none, columnsize=0)",
    "CREATE TRIGGER jobs_fts_insert AFTER INSERT ON jobs BEGIN "
    "INSERT INTO jobs_fts(rowid, name) VALUES (new.id, new.name); END",
    "CREATE TRIGGER jobs_fts_delete AFTER DELETE ON jobs BEGIN "
    "INSERT INTO jobs_fts(jobs_fts, rowid, name) VALUES ('delete', old.id, old.name); END",
    "CREATE TRIGGER jobs_fts_update AFTER UPDATE OF name ON jobs BEGIN "
    "INSERT INTO jobs_fts(jobs_fts, rowid, name) VALUES ('delete', old.id, old.name); "
    "INSERT INTO jobs_fts(rowid, name) VALUES (new.id, new.name); END",
    "INSERT INTO jobs_fts(jobs_fts) VALUES ('rebuild')",
]


def upgrade() -> None:
    op.create_index("ix_jobs_created_at_id", "jobs", ["created_at", "id"])
    op.drop_index("ix_jobs_created_at", "jobs")
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        _sqlite_fts()
    elif dialect == "postgresql":
        _postgres_trigram()


def _sqlite_fts() -> None:
    bind = op.get_bind()
    try:
        with bind.begin_nested():
            for statement in _SQLITE_FTS:
                bind.execute(text(statement))
    except exc.OperationalError as error:  # no FTS5, or no trigram tokenizer (SQLite < 3.34)
        log.warning("no FTS5 trigram index on jobs (%s): text search scans the table", error.orig)


def _trigram_schema() -> str | None:
    """The schema holding pg_trgm, installing it if need be (None: not installed, not
    permitted). In `public` where we may, so that a schema dropped later (a test's, say) does
    not take the extension, and the other schemas' indexes, with it."""
    bind = op.get_bind()
    find = text(
        "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
        "WHERE e.extname = 'pg_trgm'"
    )
    schema = bind.scalar(find)
    if schema is not None:
        return str(schema)
    for create in (
        "CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public",
        "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    ):
        try:
            with bind.begin_nested():
                bind.execute(text(create))
        except exc.DBAPIError as error:
            log.info("%s: %s", create, error.orig)
            continue
        schema = bind.scalar(find)
        if schema is not None:
            return str(schema)
    return None


def _postgres_trigram() -> None:
    schema = _trigram_schema()
    if schema is None:
        log.warning(
            "pg_trgm is not installed and this user may not install it: no trigram index on "
            "jobs, text search scans the table (a superuser can run CREATE EXTENSION pg_trgm, "
            "then CREATE INDEX ix_jobs_name_trgm ON jobs USING gin (lower(name) gin_trgm_ops))"
        )
        return
    quoted = '"' + schema.replace('"', '""') + '"'
    op.execute(
        f"CREATE INDEX ix_jobs_name_trgm ON jobs USING gin (lower(name) {quoted}.gin_trgm_ops)"
    )


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for trigger in ("jobs_fts_insert", "jobs_fts_delete", "jobs_fts_update"):
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        op.execute("DROP TABLE IF EXISTS jobs_fts")
    elif dialect == "postgresql":
        # The extension stays: other schemas of the database may use it.
        op.execute("DROP INDEX IF EXISTS ix_jobs_name_trgm")
    op.create_index("ix_jobs_created_at", "jobs", ["created_at"])
    op.drop_index("ix_jobs_created_at_id", "jobs")
