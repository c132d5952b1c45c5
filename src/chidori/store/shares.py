"""Share links: which job or dataset a link shows, until when, and whether it was revoked."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from chidori.domain.errors import NotFound
from chidori.domain.records import Share
from chidori.store.database import Database
from chidori.store.models import ShareRow


def _share(row: ShareRow) -> Share:
    return Share(
        id=row.id,
        kind=row.kind,
        job_id=row.job_id,
        schema_name=row.schema_name,
        table_name=row.table_name,
        created_by=row.created_by,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
    )


class ShareStore:
    def __init__(self, store: Database) -> None:
        self._store = store

    def now(self) -> datetime:
        return self._store.now()

    def create(
        self,
        kind: str,
        created_by: str,
        expires_at: datetime,
        job_id: int | None = None,
        schema_name: str | None = None,
        table_name: str | None = None,
    ) -> Share:
        with self._store.writing() as session:
            row = ShareRow(
                kind=kind,
                job_id=job_id,
                schema_name=schema_name,
                table_name=table_name,
                created_by=created_by,
                created_at=self._store.now(),
                expires_at=expires_at,
            )
            session.add(row)
            session.flush()
            return _share(row)

    def get(self, share_id: int) -> Share:
        with self._store.reading() as session:
            row = session.get(ShareRow, share_id)
            if row is None:
                raise NotFound(f"share {share_id} not found")
            return _share(row)

    def list(self, created_by: str | None) -> list[Share]:
        stmt = select(ShareRow).order_by(ShareRow.id.desc())
        if created_by is not None:
            stmt = stmt.where(ShareRow.created_by == created_by)
        with self._store.reading() as session:
            return [_share(row) for row in session.scalars(stmt)]

    def revoke(self, share_id: int) -> Share:
        with self._store.writing() as session:
            row = session.get(ShareRow, share_id)
            if row is None:
                raise NotFound(f"share {share_id} not found")
            if row.revoked_at is None:
                row.revoked_at = self._store.now()
            session.flush()
            return _share(row)
