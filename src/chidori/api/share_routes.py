"""Share links through the API (the pages they open are in `chidori.ui`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from chidori.api.deps import CurrentActor
from chidori.api.schemas import error_responses
from chidori.domain.records import Share
from chidori.domain.units import parse_duration_seconds
from chidori.services.shares import IssuedShare, ShareService
from chidori.web.job_views import MAX_ID


def _lifetime(value: object) -> float | None:
    if value is None:
        return None
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise ValueError("must be a duration such as 24h or 7d")
    return parse_duration_seconds(value)


class ShareIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    expires_in: float | None = Field(None, description="e.g. 24h, 7d (default 7 days, max 90d)")

    @field_validator("expires_in", mode="before")
    @classmethod
    def _expires_in(cls, value: object) -> float | None:
        return _lifetime(value)


class DatasetShareIn(ShareIn):
    schema_name: str = Field(alias="schema", min_length=1, max_length=256)
    table_name: str = Field(alias="table", min_length=1, max_length=256)


class ShareOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    id: int
    kind: str
    job_id: int | None
    schema_name: str | None = Field(serialization_alias="schema")
    table_name: str | None = Field(serialization_alias="table")
    created_by: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None

    @classmethod
    def of(cls, share: Share) -> ShareOut:
        return cls(
            id=share.id,
            kind=share.kind,
            job_id=share.job_id,
            schema_name=share.schema_name,
            table_name=share.table_name,
            created_by=share.created_by,
            created_at=share.created_at,
            expires_at=share.expires_at,
            revoked_at=share.revoked_at,
        )


class ShareCreated(ShareOut):
    url: str = Field(description="Opens without login until expires_at, unless revoked")


class ShareList(BaseModel):
    items: list[ShareOut]


def _created(request: Request, issued: IssuedShare) -> ShareCreated:
    base = str(request.base_url).rstrip("/")
    return ShareCreated(**ShareOut.of(issued.share).model_dump(), url=f"{base}{issued.path}")


def build_share_router(shares: ShareService) -> APIRouter:
    router = APIRouter(
        prefix="/api/v1", tags=["shares"], responses=error_responses(401, 403, 422, 503)
    )

    @router.post(
        "/jobs/{job_id}/share",
        status_code=201,
        response_model=ShareCreated,
        response_model_by_alias=True,
        responses=error_responses(400, 404),
    )
    def share_job(
        request: Request,
        job_id: Annotated[int, Path(ge=1, le=MAX_ID)],
        who: CurrentActor,
        body: ShareIn | None = None,
    ) -> ShareCreated:
        """A signed, expiring, read-only link to this job's page and log; no login needed."""
        issued = shares.share_job(who, job_id, body.expires_in if body else None)
        return _created(request, issued)

    @router.post(
        "/shares",
        status_code=201,
        response_model=ShareCreated,
        response_model_by_alias=True,
        responses=error_responses(400),
    )
    def share_dataset(request: Request, body: DatasetShareIn, who: CurrentActor) -> ShareCreated:
        """A link to one dataset's run history (schema + table)."""
        issued = shares.share_dataset(who, body.schema_name, body.table_name, body.expires_in)
        return _created(request, issued)

    @router.get("/shares", response_model=ShareList, response_model_by_alias=True)
    def list_shares(who: CurrentActor) -> ShareList:
        """Your share links (admins: everyone's)."""
        return ShareList(items=[ShareOut.of(s) for s in shares.list(who)])

    @router.delete(
        "/shares/{share_id}",
        response_model=ShareOut,
        response_model_by_alias=True,
        responses=error_responses(404),
    )
    def revoke_share(
        share_id: Annotated[int, Path(ge=1, le=MAX_ID)], who: CurrentActor
    ) -> ShareOut:
        return ShareOut.of(shares.revoke(who, share_id))

    return router
