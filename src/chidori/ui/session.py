"""UI sessions: a signed, HttpOnly cookie opened by signing in with a token, plus CSRF tokens.

The session is recorded server-side (IdentityService.open_ui_session) with the token used to
sign in: signing out, revoking or expiring that token, or rotating the bootstrap token it was
opened with ends it, for every copy of the cookie. The cookie carries the session's secret
id and a CSRF secret; unsafe requests authenticated by the cookie must echo that secret
(form field `csrf` or header `X-CSRF-Token`).
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

from fastapi import Request, Response

from chidori.domain.errors import Forbidden, Unauthenticated
from chidori.security.signing import BadSignature, Signer
from chidori.services.identity import Actor, IdentityService

SESSION_COOKIE = "chidori_session"
LOGIN_CSRF_COOKIE = "chidori_login_csrf"
SESSION_PURPOSE = "ui-session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Session:
    actor: Actor
    csrf: str
    id: str  # the secret id the server knows the session by


class SessionManager:
    def __init__(
        self, signer: Signer, identity: IdentityService, ttl_seconds: float = 12 * 3600
    ) -> None:
        self._signer = signer
        self._identity = identity
        self._ttl = ttl_seconds

    def open(self, response: Response, request: Request, token: str) -> Actor:
        """Sign in with an API token: set the session cookie. Unauthenticated if the token is
        not valid."""
        source = request.client.host if request.client else None
        principal = self._identity.authenticate_token(token, source)
        session_id = self._identity.open_ui_session(principal, self._ttl)
        payload = {"s": session_id, "c": secrets.token_urlsafe(24)}
        response.set_cookie(
            SESSION_COOKIE,
            self._signer.sign(SESSION_PURPOSE, payload, self._ttl),
            max_age=int(self._ttl),
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
            path="/",
        )
        return Actor(principal, source)

    def close(self, response: Response, session: Session | None = None) -> None:
        """Sign out: end the session server-side (if there is one) and drop the cookie."""
        if session is not None:
            self._identity.end_ui_session(session.id)
        response.delete_cookie(SESSION_COOKIE, path="/")

    def read(self, request: Request) -> Session | None:
        """The session of this request, or None without a cookie. Unauthenticated for a
        tampered or expired cookie, or a session that has ended (see the module)."""
        cookie = request.cookies.get(SESSION_COOKIE)
        if not cookie:
            return None
        try:
            payload = self._signer.verify(SESSION_PURPOSE, cookie)
            session_id, csrf = payload["s"], payload["c"]
        except (BadSignature, KeyError) as exc:
            raise Unauthenticated("session invalid or expired: sign in again") from exc
        if not isinstance(session_id, str) or not isinstance(csrf, str):
            raise Unauthenticated("session invalid: sign in again")
        principal = self._identity.ui_session_principal(session_id)
        source = request.client.host if request.client else None
        return Session(Actor(principal, source), csrf, session_id)

    @staticmethod
    def check_csrf(session: Session, presented: str | None) -> None:
        if not presented or not hmac.compare_digest(presented, session.csrf):
            raise Forbidden("missing or wrong CSRF token")


def login_csrf_token(request: Request) -> str:
    """The double-submit CSRF token of the sign-in form: the cookie's, or a new one."""
    return request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(24)


def set_login_csrf(response: Response, token: str) -> None:
    response.set_cookie(
        LOGIN_CSRF_COOKIE, token, max_age=3600, httponly=True, samesite="strict", path="/ui"
    )
