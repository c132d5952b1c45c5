"""Users, API tokens, the audit trail and run-time settings, in the same database as jobs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from chidori.domain.errors import Conflict, NotFound, Unauthenticated
from chidori.domain.identity import AuditEntry, Role, TokenInfo, User
from chidori.store.database import Database
from chidori.store.models import AuditRow, SettingRow, TokenRow, UiSessionRow, UserRow

# Ended and expired UI sessions are kept this long (for a look afterwards), then deleted.
_UI_SESSION_KEEP = timedelta(days=1)


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
        parent_id=row.parent_id,
    )


@dataclass(frozen=True)
class UiSessionState:
    """A UI session as stored, with the token it was opened with (None: the bootstrap token,
    or a token that no longer exists)."""

    user: str
    token_id: int | None
    bootstrap_mark: str | None
    expires_at: datetime
    ended_at: datetime | None
    token: TokenInfo | None


def _live_tokens(session: Session, user_id: int, now: datetime) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(TokenRow)
            .where(
                TokenRow.user_id == user_id,
                TokenRow.revoked_at.is_(None),
                or_(TokenRow.expires_at.is_(None), TokenRow.expires_at > now),
            )
        )
        or 0
    )


class IdentityStore:
    def __init__(self, store: Database) -> None:
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
        self,
        user: str,
        name: str,
        token_hash: str,
        prefix: str,
        expires_at: datetime | None,
        parent_id: int | None = None,
        max_live: int | None = None,
    ) -> TokenInfo:
        """A new token of `user`, the child of token `parent_id` if given. Conflict when the
        user already has `max_live` live tokens; Unauthenticated when the parent has been
        revoked meanwhile."""
        with self._store.writing() as session:
            # Locked: two creations for one user count each other, and a creation and the
            # revocation of its parent are serialised (the revocation then finds the child).
            owner = session.scalars(
                select(UserRow).where(UserRow.name == user).with_for_update()
            ).first()
            if owner is None:
                raise NotFound(f"user {user!r} not found")
            now = self.now()
            if parent_id is not None:
                parent = session.get(TokenRow, parent_id, with_for_update=True)
                if parent is None or parent.revoked_at is not None:
                    raise Unauthenticated("token revoked")
            if max_live is not None and _live_tokens(session, owner.id, now) >= max_live:
                raise Conflict(
                    f"user {user!r} already has {max_live} live tokens, the most allowed "
                    "(security.max_tokens_per_user): revoke one first"
                )
            row = TokenRow(
                user_id=owner.id,
                name=name,
                token_hash=token_hash,
                prefix=prefix,
                created_at=now,
                expires_at=expires_at,
                parent_id=parent_id,
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

    def revoke_token(self, token_id: int) -> tuple[TokenInfo, list[int]]:
        """Revoke a token and every token made with it, transitively. Returns the token and
        the ids of the descendants revoked now."""
        with self._store.writing() as session:
            row = session.get(TokenRow, token_id, with_for_update=True)
            if row is None:
                raise NotFound(f"token {token_id} not found")
            now = self.now()
            if row.revoked_at is None:
                row.revoked_at = now
            owner = session.get(UserRow, row.user_id)
            session.flush()
            revoked = _revoke_descendants(session, token_id, now)
            return _token(row, owner.name if owner else "?"), revoked

    # ---- UI sessions ------------------------------------------------------------------------

    def add_ui_session(
        self,
        id_hash: str,
        user: str,
        token_id: int | None,
        bootstrap_mark: str | None,
        expires_at: datetime,
    ) -> None:
        now = self.now()
        with self._store.writing() as session:
            session.execute(
                delete(UiSessionRow).where(UiSessionRow.expires_at < now - _UI_SESSION_KEEP)
            )
            session.add(
                UiSessionRow(
                    id_hash=id_hash,
                    user_name=user,
                    token_id=token_id,
                    bootstrap_mark=bootstrap_mark,
                    created_at=now,
                    expires_at=expires_at,
                )
            )

    def ui_session(self, id_hash: str) -> UiSessionState | None:
        with self._store.reading() as session:
            found = session.execute(
                select(UiSessionRow, TokenRow)
                .outerjoin(TokenRow, TokenRow.id == UiSessionRow.token_id)
                .where(UiSessionRow.id_hash == id_hash)
            ).first()
            if found is None:
                return None
            row, token = found
            return UiSessionState(
                user=row.user_name,
                token_id=row.token_id,
                bootstrap_mark=row.bootstrap_mark,
                expires_at=row.expires_at,
                ended_at=row.ended_at,
                token=_token(token, row.user_name) if token is not None else None,
            )

    def end_ui_session(self, id_hash: str) -> None:
        with self._store.writing() as session:
            session.execute(
                update(UiSessionRow)
                .where(UiSessionRow.id_hash == id_hash, UiSessionRow.ended_at.is_(None))
                .values(ended_at=self.now())
            )

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


def _revoke_descendants(session: Session, token_id: int, now: datetime) -> list[int]:
    """Revoke the children of `token_id`, theirs, and so on (ids always grow from parent to
    child, so this ends). Returns the ids revoked now."""
    revoked: list[int] = []
    parents = [token_id]
    while parents:
        children = session.scalars(
            select(TokenRow).where(TokenRow.parent_id.in_(parents)).with_for_update()
        ).all()
        for child in children:
            if child.revoked_at is None:
                child.revoked_at = now
                revoked.append(child.id)
        parents = [child.id for child in children]
    session.flush()
    return revoked
