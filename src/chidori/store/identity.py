"""Users, API tokens, the audit trail and run-time settings, in the same database as jobs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from chidori.errors import Conflict, NotFound
from chidori.identity import AuditEntry, Role, TokenInfo, User
from chidori.store.models import AuditRow, SettingRow, TokenRow, UserRow
from chidori.store.sql import Store


def _user(row: UserRow) -> User:
    return User(
        id=row.id,
        name=row.name,
        role=Role(row.role),
        team=row.team,
        clusters=tuple(row.clusters) if row.clusters is not None else None,
        queues=tuple(row.queues) if row.queues is not None else None,
        disabled=row.disabled,
        created_at=row.created_at,
    )


def _token(row: TokenRow, user: str) -> TokenInfo:
    return TokenInfo(
        id=row.id,
        user=user,
        name=row.name,
        prefix=row.prefix,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
    )


class IdentityStore:
    def __init__(self, store: Store) -> None:
        self._store = store

    def now(self) -> datetime:
        return self._store.now()

    # ---- users ------------------------------------------------------------------------------

    def create_user(
        self,
        name: str,
        role: Role,
        team: str | None = None,
        clusters: list[str] | None = None,
        queues: list[str] | None = None,
    ) -> User:
        """Raises Conflict when the name is taken."""
        try:
            with self._store.writing() as session:
                row = UserRow(
                    name=name,
                    role=role.value,
                    team=team,
                    clusters=clusters,
                    queues=queues,
                    disabled=False,
                    created_at=self.now(),
                )
                session.add(row)
                session.flush()
                return _user(row)
        except IntegrityError as exc:
            raise Conflict(f"user {name!r} already exists") from exc

    def ensure_user(self, name: str, role: Role) -> User:
        """The user `name`, created with `role` if missing (its role is left as it is)."""
        try:
            return self.get_user(name)
        except NotFound:
            pass
        try:
            return self.create_user(name, role)
        except Conflict:
            return self.get_user(name)

    def get_user(self, name: str) -> User:
        with self._store.reading() as session:
            row = session.scalars(select(UserRow).where(UserRow.name == name)).first()
            if row is None:
                raise NotFound(f"user {name!r} not found")
            return _user(row)

    def list_users(self) -> list[User]:
        with self._store.reading() as session:
            return [_user(row) for row in session.scalars(select(UserRow).order_by(UserRow.name))]

    def update_user(self, name: str, changes: dict[str, Any]) -> User:
        """Set the given fields (role, team, clusters, queues, disabled)."""
        with self._store.writing() as session:
            row = session.scalars(select(UserRow).where(UserRow.name == name)).first()
            if row is None:
                raise NotFound(f"user {name!r} not found")
            for key, value in changes.items():
                setattr(row, key, value.value if isinstance(value, Role) else value)
            session.flush()
            return _user(row)

    # ---- tokens -----------------------------------------------------------------------------

    def add_token(
        self, user: str, name: str, token_hash: str, prefix: str, expires_at: datetime | None
    ) -> TokenInfo:
        with self._store.writing() as session:
            owner = session.scalars(select(UserRow).where(UserRow.name == user)).first()
            if owner is None:
                raise NotFound(f"user {user!r} not found")
            row = TokenRow(
                user_id=owner.id,
                name=name,
                token_hash=token_hash,
                prefix=prefix,
                created_at=self.now(),
                expires_at=expires_at,
            )
            session.add(row)
            session.flush()
            return _token(row, owner.name)

    def find_token(self, token_hash: str) -> tuple[User, TokenInfo] | None:
        with self._store.reading() as session:
            found = session.execute(
                select(TokenRow, UserRow)
                .join(UserRow, UserRow.id == TokenRow.user_id)
                .where(TokenRow.token_hash == token_hash)
            ).first()
            if found is None:
                return None
            token, user = found
            return _user(user), _token(token, user.name)

    def list_tokens(self, user: str | None = None) -> list[TokenInfo]:
        stmt = select(TokenRow, UserRow.name).join(UserRow, UserRow.id == TokenRow.user_id)
        if user is not None:
            stmt = stmt.where(UserRow.name == user)
        with self._store.reading() as session:
            return [_token(t, n) for t, n in session.execute(stmt.order_by(TokenRow.id))]

    def get_token(self, token_id: int) -> TokenInfo:
        with self._store.reading() as session:
            found = session.execute(
                select(TokenRow, UserRow.name)
                .join(UserRow, UserRow.id == TokenRow.user_id)
                .where(TokenRow.id == token_id)
            ).first()
            if found is None:
                raise NotFound(f"token {token_id} not found")
            return _token(found[0], found[1])

    def revoke_token(self, token_id: int) -> TokenInfo:
        with self._store.writing() as session:
            row = session.get(TokenRow, token_id)
            if row is None:
                raise NotFound(f"token {token_id} not found")
            if row.revoked_at is None:
                row.revoked_at = self.now()
            owner = session.get(UserRow, row.user_id)
            session.flush()
            return _token(row, owner.name if owner else "?")

    # ---- audit and settings -----------------------------------------------------------------

    def audit(
        self,
        actor: str,
        action: str,
        target: str | None,
        source: str | None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        with self._store.writing() as session:
            session.add(
                AuditRow(
                    time=self.now(),
                    actor=actor,
                    action=action,
                    target=target,
                    source=source,
                    detail=detail,
                )
            )

    def list_audit(self, limit: int, before_id: int | None = None) -> list[AuditEntry]:
        stmt = select(AuditRow).order_by(AuditRow.id.desc()).limit(limit)
        if before_id is not None:
            stmt = stmt.where(AuditRow.id < before_id)
        with self._store.reading() as session:
            return [
                AuditEntry(r.id, r.time, r.actor, r.action, r.target, r.source, r.detail)
                for r in session.scalars(stmt)
            ]

    def get_setting(self, key: str) -> dict[str, Any] | None:
        with self._store.reading() as session:
            row = session.get(SettingRow, key)
            return dict(row.value) if row is not None else None

    def put_setting(self, key: str, value: dict[str, Any], by: str) -> None:
        with self._store.writing() as session:
            row = session.get(SettingRow, key)
            if row is None:
                session.add(SettingRow(key=key, value=value, updated_at=self.now(), updated_by=by))
            else:
                row.value = value
                row.updated_at = self.now()
                row.updated_by = by
