"""Identity and admin routes: who am I, users, tokens, policy, audit trail."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from chidori.api.admin_schemas import (
    AuditList,
    AuditOut,
    TokenCreated,
    TokenIn,
    TokenList,
    TokenOut,
    UserIn,
    UserList,
    UserOut,
    UserPatch,
    WhoAmI,
)
from chidori.api.deps import CurrentActor
from chidori.api.schemas import error_responses
from chidori.domain.policy import PolicyDoc
from chidori.services.identity import IdentityService
from chidori.web.job_views import MAX_ID, decode_cursor, encode_cursor


def build_admin_router(identity: IdentityService) -> APIRouter:
    router = APIRouter(prefix="/api/v1", responses=error_responses(401, 403, 422, 503))

    @router.get("/whoami", response_model=WhoAmI, tags=["identity"])
    def whoami(who: CurrentActor) -> WhoAmI:
        return WhoAmI(name=who.name, role=who.principal.role, team=who.principal.team)

    @router.get("/admin/users", response_model=UserList, tags=["admin"])
    def list_users(who: CurrentActor) -> UserList:
        return UserList(items=[UserOut.of(u) for u in identity.list_users(who)])

    @router.post(
        "/admin/users",
        status_code=201,
        response_model=UserOut,
        tags=["admin"],
        responses=error_responses(400, 409, 413),
    )
    def create_user(body: UserIn, who: CurrentActor) -> UserOut:
        return UserOut.of(
            identity.create_user(who, body.name, body.role, body.team, body.clusters, body.queues)
        )

    @router.patch(
        "/admin/users/{name}",
        response_model=UserOut,
        tags=["admin"],
        responses=error_responses(400, 404, 413),
    )
    def update_user(name: str, body: UserPatch, who: CurrentActor) -> UserOut:
        changes: dict[str, Any] = {k: getattr(body, k) for k in body.model_fields_set}
        return UserOut.of(identity.update_user(who, name, changes))

    @router.get("/tokens", response_model=TokenList, tags=["identity"])
    def list_tokens(
        who: CurrentActor, user: Annotated[str | None, Query(max_length=128)] = None
    ) -> TokenList:
        """Your tokens (admins: everyone's, or one user's). Never the secrets."""
        return TokenList(items=[TokenOut.of(t) for t in identity.list_tokens(who, user)])

    @router.post(
        "/tokens",
        status_code=201,
        response_model=TokenCreated,
        tags=["identity"],
        responses=error_responses(400, 404, 413),
    )
    def create_token(body: TokenIn, who: CurrentActor) -> TokenCreated:
        """A new API token. The secret is in this answer only."""
        info, secret = identity.create_token(who, body.user, body.name, body.expires_in)
        return TokenCreated(**TokenOut.of(info).model_dump(), token=secret)

    @router.delete(
        "/tokens/{token_id}",
        response_model=TokenOut,
        tags=["identity"],
        responses=error_responses(404),
    )
    def revoke_token(
        token_id: Annotated[int, Path(ge=1, le=MAX_ID)], who: CurrentActor
    ) -> TokenOut:
        return TokenOut.of(identity.revoke_token(who, token_id))

    @router.get("/admin/policy", response_model=PolicyDoc, tags=["admin"])
    def get_policy(who: CurrentActor) -> PolicyDoc:
        """What jobs may ask for (readable by everyone signed in, so they know the rules)."""
        del who
        return identity.policy()

    @router.put(
        "/admin/policy",
        response_model=PolicyDoc,
        tags=["admin"],
        responses=error_responses(400, 413),
    )
    def put_policy(body: PolicyDoc, who: CurrentActor) -> PolicyDoc:
        return identity.set_policy(who, body)

    @router.get("/admin/audit", response_model=AuditList, tags=["admin"])
    def audit(
        who: CurrentActor,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        cursor: Annotated[str | None, Query(max_length=200)] = None,
    ) -> AuditList:
        """Changes to users, tokens, policy and uploads (job changes are job events)."""
        entries = identity.audit_trail(who, limit + 1, decode_cursor(cursor))
        more = len(entries) > limit
        entries = entries[:limit]
        return AuditList(
            items=[AuditOut.of(e) for e in entries],
            next_cursor=encode_cursor(entries[-1].id) if more and entries else None,
        )

    return router
