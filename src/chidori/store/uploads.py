"""Who stored which upload: an upload is usable by the user who stored it and by their team."""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError

from chidori.store.database import Database
from chidori.store.models import UploadRow


class UploadRegistry:
    """Upload ownership records (`chidori.storage.artifacts` keeps the bytes)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def record_upload(self, uri: str, user: str, team: str | None, size: int) -> None:
        """Remember that `user` (in `team`) stored the upload `uri`; once per user and URI."""
        known = select(UploadRow.id).where(UploadRow.uri == uri, UploadRow.uploaded_by == user)
        try:
            with self._db.writing() as session:
                if session.scalar(known) is None:
                    session.add(
                        UploadRow(
                            uri=uri,
                            uploaded_by=user,
                            team=team,
                            size=size,
                            created_at=self._db.now(),
                        )
                    )
        except IntegrityError:
            pass  # the same user stored it at the same moment elsewhere: recorded once

    def upload_known(self, uri: str, user: str, team: str | None) -> bool:
        """Whether `user` or anyone who stored it in `team` (when not None) stored `uri`."""
        who = UploadRow.uploaded_by == user
        if team is not None:
            who = or_(who, UploadRow.team == team)
        with self._db.reading() as session:
            found = session.scalar(select(UploadRow.id).where(UploadRow.uri == uri, who).limit(1))
            return found is not None
