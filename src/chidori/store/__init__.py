"""The store: Chidori's source of truth, on SQLite (default) or PostgreSQL.

- `database.py`: the handle (engines, transactions, migrations, change listeners);
- one repository per aggregate: `jobs.py` (submissions through `group_commit.py`, reads, cancel
  requests; the list query in `job_list.py`), `attempts.py` (an attempt's lifecycle), `servers.py`
  (replicas and leases), `uploads.py`, `admission.py` (limits, queues, warm drivers and the atomic
  admit step), `identity.py`, `shares.py`, `sessions.py` (Livy sessions), `shared_secret.py`;
- `models.py` (tables), `statements.py` (the per-job statements, built once), `rows.py` (rows
  to records), `migrations/` (Alembic, applied at start).

The rules the repositories apply (states, transitions, demand, retries) are pure code in
`chidori.domain`.
"""

from __future__ import annotations

from dataclasses import dataclass

from chidori.store.attempts import AttemptRepository
from chidori.store.database import Database, open_database
from chidori.store.jobs import JobRepository
from chidori.store.servers import ServerRegistry
from chidori.store.uploads import UploadRegistry


@dataclass(frozen=True)
class Repositories:
    """The job-lifecycle repositories of one database, built together by the composition root
    (each component is handed the ones it uses)."""

    db: Database
    jobs: JobRepository
    attempts: AttemptRepository
    servers: ServerRegistry
    uploads: UploadRegistry

    @classmethod
    def of(cls, db: Database, remote_clusters: frozenset[str] = frozenset()) -> Repositories:
        """`remote_clusters`: whose drivers run at their service (no driver memory here)."""
        return cls(
            db,
            JobRepository(db, remote_clusters),
            AttemptRepository(db),
            ServerRegistry(db),
            UploadRegistry(db),
        )


__all__ = [
    "AttemptRepository",
    "Database",
    "JobRepository",
    "Repositories",
    "ServerRegistry",
    "UploadRegistry",
    "open_database",
]
