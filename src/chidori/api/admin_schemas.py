"""Request and response shapes of the identity and admin endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from chidori.domain.identity import AuditEntry, Role, TokenInfo, User
from chidori.domain.units import parse_duration_seconds
from chidori.services.identity import USER_NAME_PATTERN

UserName = Annotated[str, Field(pattern=USER_NAME_PATTERN)]
NameList = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=128)]], Field(max_length=100)
]
DEFAULT_TOKEN_LIFETIME = 90 * 86400.0
MAX_TOKEN_LIFETIME = 366 * 86400.0


class UserIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: UserName
    role: Role = Role.USER
    team: str | None = Field(None, min_length=1, max_length=128)
    clusters: NameList | None = Field(None, description="Clusters this user may use; null = all")
    queues: NameList | None = Field(None, description="Queues this user may use; null = all")


def _absent_means_unchanged(schema: dict[str, Any]) -> None:
    """A field that may be left out but not set to null: no `default: null` in its schema."""
    schema.pop("default", None)


class UserPatch(BaseModel):
    """Only the fields given are changed."""

    model_config = ConfigDict(extra="forbid")

    # Absent = unchanged; null is refused (a user always has a role and an enabled flag).
    role: Role = Field(None, json_schema_extra=_absent_means_unchanged)  # type: ignore[assignment]
    team: str | None = Field(None, min_length=1, max_length=128)
    clusters: NameList | None = None
    queues: NameList | None = None
    disabled: bool = Field(None, json_schema_extra=_absent_means_unchanged)  # type: ignore[assignment]


class UserOut(BaseModel):
    name: str
    role: Role
    team: str | None
    clusters: list[str] | None
    queues: list[str] | None
    disabled: bool
    created_at: datetime

    @classmethod
    def of(cls, user: User) -> UserOut:
        return cls(
            name=user.name,
            role=user.role,
            team=user.team,
            clusters=list(user.clusters) if user.clusters is not None else None,
            queues=list(user.queues) if user.queues is not None else None,
            disabled=user.disabled,
            created_at=user.created_at,
        )


class UserList(BaseModel):
    items: list[UserOut]


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field("token", min_length=1, max_length=128)
    user: UserName | None = Field(None, description="Whose token (admins only); default: yours")
    expires_in: float | None = Field(
        DEFAULT_TOKEN_LIFETIME,
        description="Lifetime, e.g. 30d or 12h (default 90 days, at most 366 days)",
    )

    @field_validator("expires_in", mode="before")
    @classmethod
    def _lifetime(cls, value: object) -> float:
        if value is None:
            raise ValueError("tokens must expire: give a lifetime of at most 366d")
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ValueError("must be a duration such as 30d or 12h")
        seconds = parse_duration_seconds(value)
        if seconds > MAX_TOKEN_LIFETIME:
            raise ValueError("at most 366d")
        return seconds


class TokenOut(BaseModel):
    id: int
    user: str
    name: str
    prefix: str = Field(description="The first characters of the token, to recognise it")
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    parent_id: int | None = Field(
        None, description="The token this one was made with; revoking that one revokes this"
    )

    @classmethod
    def of(cls, info: TokenInfo) -> TokenOut:
        return cls(
            id=info.id,
            user=info.user,
            name=info.name,
            prefix=info.prefix,
            created_at=info.created_at,
            expires_at=info.expires_at,
            revoked_at=info.revoked_at,
            parent_id=info.parent_id,
        )


class TokenCreated(TokenOut):
    token: str = Field(description="The secret. Shown this once; only its hash is kept.")


class TokenList(BaseModel):
    items: list[TokenOut]


class AuditOut(BaseModel):
    id: int
    time: datetime
    actor: str
    action: str
    target: str | None
    source: str | None
    detail: dict[str, object] | None

    @classmethod
    def of(cls, entry: AuditEntry) -> AuditOut:
        return cls(
            id=entry.id,
            time=entry.time,
            actor=entry.actor,
            action=entry.action,
            target=entry.target,
            source=entry.source,
            detail=entry.detail,
        )


class AuditList(BaseModel):
    items: list[AuditOut]
    next_cursor: str | None


class WhoAmI(BaseModel):
    name: str
    role: Role
    team: str | None
