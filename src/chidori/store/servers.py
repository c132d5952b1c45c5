"""The server registry: which replicas are up, their heartbeats, and the leases they renew."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from chidori.domain.records import Server
from chidori.store.database import Database
from chidori.store.models import AttemptRow, ServerRow
from chidori.store.statements import ACTIVE_ATTEMPT


class ServerRegistry:
    """Replicas: register, heartbeat (renewing their attempts' leases), stop, list."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def register_server(self, server_id: str, host: str, pid: int, version: str) -> None:
        now = self._db.now()
        with self._db.writing() as session:
            session.add(
                ServerRow(
                    id=server_id,
                    host=host,
                    pid=pid,
                    version=version,
                    started_at=now,
                    heartbeat_at=now,
                )
            )

    def heartbeat(self, server_id: str, lease_seconds: float) -> set[tuple[int, int]]:
        """Renew this server's heartbeat and the leases of its active attempts, in one
        transaction. Returns the (job id, attempt) pairs it still owns."""
        now = self._db.now()
        with self._db.writing() as session:
            session.execute(
                update(ServerRow)
                .where(ServerRow.id == server_id)
                .values(heartbeat_at=now, stopped_at=None)
                .execution_options(synchronize_session=False)
            )
            session.execute(
                update(AttemptRow)
                .where(AttemptRow.server_id == server_id, AttemptRow.state.in_(ACTIVE_ATTEMPT))
                .values(lease_expires_at=now + timedelta(seconds=lease_seconds))
                .execution_options(synchronize_session=False)
            )
            owned = session.execute(
                select(AttemptRow.job_id, AttemptRow.number).where(
                    AttemptRow.server_id == server_id, AttemptRow.state.in_(ACTIVE_ATTEMPT)
                )
            ).all()
        return {(job_id, number) for job_id, number in owned}

    def server_stopped(self, server_id: str) -> None:
        with self._db.writing() as session:
            session.execute(
                update(ServerRow)
                .where(ServerRow.id == server_id)
                .values(stopped_at=self._db.now())
                .execution_options(synchronize_session=False)
            )

    def list_servers(self, include_stopped: bool = False) -> list[Server]:
        stmt = select(ServerRow).order_by(ServerRow.started_at)
        if not include_stopped:
            stmt = stmt.where(ServerRow.stopped_at.is_(None))
        with self._db.reading() as session:
            return [
                Server(r.id, r.host, r.pid, r.version, r.started_at, r.heartbeat_at, r.stopped_at)
                for r in session.scalars(stmt)
            ]
