"""Who a caller is (roles, teams) and what each role may do with a job."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from chidori.domain.errors import Forbidden


class Role(StrEnum):
    ADMIN = "admin"  # everything, for everyone
    USER = "user"  # submits jobs; sees and acts on its own and its team's
    VIEWER = "viewer"  # reads its own and its team's jobs; changes nothing


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role
    team: str | None = None
    clusters: tuple[str, ...] | None = None  # None = every cluster
    queues: tuple[str, ...] | None = None  # None = every queue
    token_id: int | None = None

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    def require(self, *roles: Role) -> None:
        if self.role not in roles:
            raise Forbidden(f"{self.role.value} {self.name!r} may not do this")

    def can_see(self, owner: str, team: str | None) -> bool:
        """May read a job owned by `owner` in `team`."""
        if self.is_admin or owner == self.name:
            return True
        return self.team is not None and team == self.team


@dataclass(frozen=True)
class User:
    id: int
    name: str
    role: Role
    team: str | None
    clusters: tuple[str, ...] | None
    queues: tuple[str, ...] | None
    disabled: bool
    created_at: datetime

    def principal(self, token_id: int | None = None) -> Principal:
        return Principal(self.name, self.role, self.team, self.clusters, self.queues, token_id)


@dataclass(frozen=True)
class TokenInfo:
    """An API token as listed: never the secret itself."""

    id: int
    user: str
    name: str
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    parent_id: int | None = None  # the token it was made with: revoking that revokes this


@dataclass(frozen=True)
class AuditEntry:
    id: int
    time: datetime
    actor: str
    action: str
    target: str | None
    source: str | None
    detail: dict[str, object] | None
