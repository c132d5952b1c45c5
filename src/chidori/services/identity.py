"""Authentication, users, tokens, policy and the audit trail."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from chidori.domain.errors import Forbidden, InvalidRequest, NotFound, Unauthenticated
from chidori.domain.identity import AuditEntry, Principal, Role, TokenInfo, User
from chidori.domain.policy import PolicyDoc
from chidori.services.ratelimit import FailureThrottle
from chidori.services.refreshed import Refreshed
from chidori.store.identity import IdentityStore, UiSessionState

BOOTSTRAP_ADMIN = "admin"
TOKEN_PREFIX = "chd_"  # noqa: S105 - a prefix, not a secret
POLICY_KEY = "policy"
_POLICY_CACHE_SECONDS = 1.0
# Tokens already checked are trusted this long without reading the store again. A revocation,
# or a change to the user, applies at once on the replica that made it, within this on others.
_TOKEN_CACHE_SECONDS = 1.0
_TOKEN_CACHE_SIZE = 10_000
# The rule for every user name, whoever makes it: an admin (api.admin_schemas.UserName) or a
# reverse proxy naming a user seen for the first time.
USER_NAME_PATTERN = r"^[A-Za-z0-9_.@\-]{1,128}$"
_USER_NAME = re.compile(USER_NAME_PATTERN)
DEFAULT_MAX_LIVE_TOKENS = 50


@dataclass(frozen=True)
class Actor:
    """An authenticated caller, and the address the call came from (for the audit trail)."""

    principal: Principal
    source: str | None = None

    @property
    def name(self) -> str:
        return self.principal.name


def hash_token(token: str) -> str:
    # Tokens are 256-bit random strings: a fast hash is enough, a salt adds nothing.
    return hashlib.sha256(token.encode()).hexdigest()


def token_from_header(authorization: str | None) -> str | None:
    """The token in `Bearer TOKEN`, or the password of HTTP basic auth."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return value
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        _, sep, password = decoded.partition(":")
        return password if sep and password else None
    return None


def _token_live(token: TokenInfo | None, now: datetime) -> bool:
    return (
        token is not None
        and token.revoked_at is None
        and (token.expires_at is None or token.expires_at > now)
    )


@dataclass(frozen=True)
class _TokenCheck:
    principal: Principal | None  # None: refused
    refusal: str | None
    expires_at: datetime | None
    unknown: bool = False  # no such token at all (a guess, or a typo)


class IdentityService:
    def __init__(
        self,
        store: IdentityStore,
        bootstrap_token: str,
        default_policy: PolicyDoc,
        max_live_tokens: int = DEFAULT_MAX_LIVE_TOKENS,
        failures: FailureThrottle | None = None,
    ) -> None:
        self._store = store
        self._bootstrap_digest = hash_token(bootstrap_token)
        self._default_policy = default_policy
        self._max_live_tokens = max_live_tokens
        # Wrong tokens per client address (guessing); off when None.
        self._failures = failures or FailureThrottle(0)
        # Read on every submission: another replica's change applies here within a second,
        # this replica's at once.
        self._policy = Refreshed(self._load_policy, _POLICY_CACHE_SECONDS)
        # What the store said of each token seen lately (see _TOKEN_CACHE_SECONDS).
        self._known_tokens: dict[str, Refreshed[_TokenCheck]] = {}

    def bootstrap(self) -> None:
        """Make sure the first admin exists (its token is the bootstrap token)."""
        self._store.ensure_user(BOOTSTRAP_ADMIN, Role.ADMIN)

    # ---- authentication ---------------------------------------------------------------------

    def authenticate(self, authorization: str | None, source: str | None = None) -> Principal:
        token = token_from_header(authorization)
        if token is None:
            raise Unauthenticated("authentication required: send Authorization: Bearer TOKEN")
        return self.authenticate_token(token, source)

    def authenticate_token(self, token: str, source: str | None = None) -> Principal:
        """The principal of a token. RateLimited when `source` (the client address) has
        presented too many unknown tokens lately; such a refusal is counted against it.
        Revoked or expired tokens are stale credentials, not guesses: they are not counted."""
        self._failures.check(source)
        digest = hash_token(token)
        if hmac.compare_digest(digest, self._bootstrap_digest):
            return Principal(BOOTSTRAP_ADMIN, Role.ADMIN)
        check = self._token_check(digest).get()
        refusal = self._refusal(check)
        if refusal is not None:
            if check.unknown:
                self._failures.failed(source)
            raise Unauthenticated(refusal)
        assert check.principal is not None
        return check.principal

    def cached_principal(self, authorization: str | None) -> Principal | None:
        """The caller's principal if it is known without reading the store (the bootstrap
        token, or a token checked within the last second); None otherwise (authenticate)."""
        token = token_from_header(authorization)
        if token is None:
            return None
        digest = hash_token(token)
        if hmac.compare_digest(digest, self._bootstrap_digest):
            return Principal(BOOTSTRAP_ADMIN, Role.ADMIN)
        known = self._known_tokens.get(digest)
        if known is None or not known.fresh():
            return None
        check = known.get()
        return check.principal if self._refusal(check) is None else None

    def _refusal(self, check: _TokenCheck) -> str | None:
        """Why a token the store has answered for is refused now, if it is."""
        if check.refusal is not None:
            return check.refusal
        if check.expires_at is not None and check.expires_at <= self._store.now():
            return "token expired"
        return None

    def _token_check(self, digest: str) -> Refreshed[_TokenCheck]:
        known = self._known_tokens.get(digest)
        if known is None:
            if len(self._known_tokens) >= _TOKEN_CACHE_SIZE:
                self._known_tokens.clear()
            known = self._known_tokens.setdefault(
                digest, Refreshed(lambda: self._look_up(digest), _TOKEN_CACHE_SECONDS)
            )
        return known

    def _look_up(self, digest: str) -> _TokenCheck:
        found = self._store.find_token(digest)
        if found is None:
            return _TokenCheck(None, "invalid token", None, unknown=True)
        user, info = found
        if info.revoked_at is not None:
            return _TokenCheck(None, "token revoked", None)
        if user.disabled:
            return _TokenCheck(None, "user disabled", None)
        return _TokenCheck(user.principal(info.id), None, info.expires_at)

    def session_principal(self, name: str, token_id: int | None) -> Principal:
        """The principal of `name` if the token it signed in with, if any, still holds (to
        re-check a long-lived stream; UI sessions: ui_session_principal)."""
        if token_id is not None and not _token_live(
            self._store.get_token(token_id), self._store.now()
        ):
            raise Unauthenticated("session ended: its token is no longer valid")
        return self.principal_for(name, token_id)

    def principal_for(self, name: str, token_id: int | None = None) -> Principal:
        """A known, enabled user (for sessions and proxy identities)."""
        user = self._store.get_user(name)
        if user.disabled:
            raise Unauthenticated("user disabled")
        return user.principal(token_id)

    def proxy_principal(self, name: str, header: str = "the proxy header") -> Principal:
        """A user named by a trusted reverse proxy; created as a plain user on first sight.
        Names follow the same rule as the ones admins create."""
        if not _USER_NAME.fullmatch(name):
            raise Unauthenticated(
                f"invalid user name in {header}: 1 to 128 letters, digits and _ . @ -"
            )
        try:
            return self.principal_for(name)
        except NotFound:
            self._store.create_user(name, Role.USER)
            return self.principal_for(name)

    # ---- users ------------------------------------------------------------------------------

    def create_user(
        self,
        actor: Actor,
        name: str,
        role: Role,
        team: str | None,
        clusters: list[str] | None,
        queues: list[str] | None,
    ) -> User:
        actor.principal.require(Role.ADMIN)
        user = self._store.create_user(name, role, team, clusters, queues)
        self._store.audit(
            actor.name,
            "user.create",
            name,
            actor.source,
            {"role": role.value, "team": team, "clusters": clusters, "queues": queues},
        )
        return user

    def list_users(self, actor: Actor) -> list[User]:
        actor.principal.require(Role.ADMIN)
        return self._store.list_users()

    def update_user(self, actor: Actor, name: str, changes: dict[str, Any]) -> User:
        actor.principal.require(Role.ADMIN)
        if name == BOOTSTRAP_ADMIN and (
            changes.get("disabled") or changes.get("role") not in (None, Role.ADMIN)
        ):
            raise InvalidRequest.for_field("role", "the bootstrap admin stays an enabled admin")
        user = self._store.update_user(name, changes)
        self._known_tokens.clear()
        self._store.audit(
            actor.name,
            "user.update",
            name,
            actor.source,
            {k: (v.value if isinstance(v, Role) else v) for k, v in changes.items()},
        )
        return user

    # ---- tokens -----------------------------------------------------------------------------

    def create_token(
        self, actor: Actor, user: str | None, name: str, expires_in: float | None
    ) -> tuple[TokenInfo, str]:
        """A new token; the secret is returned here and never again. A token made by a
        caller signed in with a token is that token's child: revoking the parent revokes it.
        Conflict when the owner already has the most live tokens allowed."""
        owner = user or actor.name
        if owner != actor.name:
            actor.principal.require(Role.ADMIN)
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        expires_at = (
            self._store.now() + timedelta(seconds=expires_in) if expires_in is not None else None
        )
        parent = actor.principal.token_id
        info = self._store.add_token(
            owner,
            name,
            hash_token(secret),
            secret[:10],
            expires_at,
            parent_id=parent,
            max_live=self._max_live_tokens or None,  # 0: no cap
        )
        self._store.audit(
            actor.name,
            "token.create",
            f"{owner}/{info.id}",
            actor.source,
            {
                "name": name,
                "expires_at": expires_at.isoformat() if expires_at else None,
                "parent_id": parent,
            },
        )
        return info, secret

    def list_tokens(self, actor: Actor, user: str | None = None) -> list[TokenInfo]:
        if actor.principal.is_admin:
            return self._store.list_tokens(user)
        if user not in (None, actor.name):
            raise Forbidden("only admins may list other users' tokens")
        return self._store.list_tokens(actor.name)

    def revoke_token(self, actor: Actor, token_id: int) -> TokenInfo:
        info = self._store.get_token(token_id)
        if info.user != actor.name and not actor.principal.is_admin:
            raise NotFound(f"token {token_id} not found")
        revoked, descendants = self._store.revoke_token(token_id)
        self._known_tokens.clear()
        self._store.audit(
            actor.name,
            "token.revoke",
            f"{info.user}/{token_id}",
            actor.source,
            {"with_children": descendants} if descendants else None,
        )
        return revoked

    # ---- UI sessions ------------------------------------------------------------------------

    def open_ui_session(self, principal: Principal, ttl_seconds: float) -> str:
        """Record a UI session for `principal` (signed in with its token, or the bootstrap
        token); returns its secret id, which only the session cookie carries."""
        session_id = secrets.token_urlsafe(32)
        bootstrap_mark = (
            self._bootstrap_mark(session_id)
            if principal.token_id is None and principal.name == BOOTSTRAP_ADMIN
            else None
        )
        self._store.add_ui_session(
            hash_token(session_id),
            principal.name,
            principal.token_id,
            bootstrap_mark,
            self._store.now() + timedelta(seconds=ttl_seconds),
        )
        return session_id

    def ui_session_principal(self, session_id: str) -> Principal:
        """The principal of an open UI session. Unauthenticated once it was signed out of or
        expired, once its token is revoked or expired, or, for one opened with the bootstrap
        token, once that token has changed (rotated)."""
        state = self._store.ui_session(hash_token(session_id))
        refusal = self._ui_session_refusal(session_id, state)
        if refusal is not None:
            raise Unauthenticated(refusal)
        assert state is not None
        try:
            return self.principal_for(state.user, state.token_id)
        except NotFound as exc:
            raise Unauthenticated("session invalid: sign in again") from exc

    def _ui_session_refusal(self, session_id: str, state: UiSessionState | None) -> str | None:
        if state is None or state.ended_at is not None:
            return "session ended: sign in again"
        now = self._store.now()
        if state.expires_at <= now:
            return "session expired: sign in again"
        if state.token_id is not None and not _token_live(state.token, now):
            return "session ended: its token is no longer valid"
        if state.bootstrap_mark is not None and not hmac.compare_digest(
            state.bootstrap_mark, self._bootstrap_mark(session_id)
        ):
            return "session ended: the admin token it was opened with has changed"
        return None

    def end_ui_session(self, session_id: str) -> None:
        """Sign out: the session stops working everywhere, even with a copy of its cookie."""
        self._store.end_ui_session(hash_token(session_id))

    def _bootstrap_mark(self, session_id: str) -> str:
        # Which bootstrap token a session was opened with, keyed by the session's own secret
        # so that the database never holds anything to test guesses of that token against.
        return hmac.new(session_id.encode(), self._bootstrap_digest.encode(), "sha256").hexdigest()

    # ---- policy and audit -------------------------------------------------------------------

    def policy(self) -> PolicyDoc:
        """The policy in force (see `Refreshed` for how fresh)."""
        return self._policy.get()

    def policy_fresh(self) -> bool:
        """Whether `policy()` answers now without reading the store."""
        return self._policy.fresh()

    def _load_policy(self) -> PolicyDoc:
        stored = self._store.get_setting(POLICY_KEY)
        return PolicyDoc.model_validate(stored) if stored is not None else self._default_policy

    def set_policy(self, actor: Actor, policy: PolicyDoc) -> PolicyDoc:
        actor.principal.require(Role.ADMIN)
        value = policy.model_dump(mode="json")
        self._store.put_setting(POLICY_KEY, value, actor.name)
        self._policy.forget()
        self._store.audit(actor.name, "policy.update", POLICY_KEY, actor.source, value)
        return policy

    def audit_trail(self, actor: Actor, limit: int, before_id: int | None) -> list[AuditEntry]:
        actor.principal.require(Role.ADMIN)
        return self._store.list_audit(limit, before_id)

    def record(
        self, actor: Actor, action: str, target: str | None, detail: dict[str, Any] | None = None
    ) -> None:
        self._store.audit(actor.name, action, target, actor.source, detail)
