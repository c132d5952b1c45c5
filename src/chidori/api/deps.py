"""Request-level dependencies: who is calling."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Header, Request

from chidori.api.middleware import PROXY_PEER, media_type
from chidori.domain.errors import Forbidden, Unauthenticated, UnsupportedMediaType
from chidori.services.identity import Actor, IdentityService
from chidori.ui.session import SAFE_METHODS, SessionManager

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# Headers a cross-site form cannot send, and a cross-site script only after a CORS preflight,
# which Chidori never grants: their presence proves the request came from a page or tool of
# the caller's own (oauth2-proxy and other SSO proxies pass request headers through).
CSRF_PROOF_HEADERS = ("x-requested-with", "x-csrf-token")
# Routes whose body is not JSON (multipart uploads).
NON_JSON_BODY_PREFIXES = ("/api/v1/uploads",)


@dataclass(frozen=True)
class ProxyAuth:
    """Identity set by a trusted reverse proxy (e.g. OIDC in front): the user name is read
    from `header`, only on requests whose direct peer is in the `trusted` networks (see
    middleware.TrustedProxyHeaders, which records that peer)."""

    header: str | None = None
    trusted: tuple[Network, ...] = field(default=())

    def trusts(self, host: str) -> bool:
        """Whether `host` is one of the trusted proxies."""
        if not self.trusted:
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in net for net in self.trusted)

    def user(self, request: Request) -> str | None:
        if not self.header or request.scope.get(PROXY_PEER) is None:
            return None
        value = request.headers.get(self.header)
        return value.strip() if value else None

    @staticmethod
    def check_unsafe(request: Request) -> None:
        """An unsafe request authenticated by the proxy header must prove it is not a
        cross-site one: the browser sends the proxy's cookie, and so the header, on any
        request another site makes it send. Forbidden without a custom header; 415 for a
        body that is not JSON (uploads excepted)."""
        if not any(request.headers.get(name) for name in CSRF_PROOF_HEADERS):
            raise Forbidden(
                "requests authenticated by the proxy that change anything must send "
                "X-Requested-With (any value) or X-CSRF-Token"
            )
        if request.url.path.startswith(NON_JSON_BODY_PREFIXES) or not _has_body(request):
            return
        kind = media_type(request.headers.get("content-type", ""))
        if kind != "application/json" and not kind.endswith("+json"):
            raise UnsupportedMediaType("send the body as JSON (Content-Type: application/json)")


def _has_body(request: Request) -> bool:
    length = request.headers.get("content-length")
    return (length is not None and length.strip() != "0") or (
        "transfer-encoding" in request.headers
    )


def client_address(request: Request) -> str | None:
    """The caller's address: the socket's peer, or the client a trusted proxy named."""
    return request.client.host if request.client else None


def current_actor(request: Request, authorization: Annotated[str | None, Header()] = None) -> Actor:
    """The authenticated caller (401 otherwise), with the client address for the audit trail."""
    identity: IdentityService = request.app.state.identity
    source = client_address(request)
    if authorization:
        return Actor(identity.authenticate(authorization, source), source)
    proxy: ProxyAuth = request.app.state.proxy_auth
    proxied = proxy.user(request)
    if proxied is not None:
        if request.method not in SAFE_METHODS:
            proxy.check_unsafe(request)
        return Actor(identity.proxy_principal(proxied, proxy.header or ""), source)
    sessions: SessionManager | None = getattr(request.app.state, "sessions", None)
    session = sessions.read(request) if sessions is not None else None
    if session is not None:
        if request.method not in SAFE_METHODS:
            SessionManager.check_csrf(session, request.headers.get("x-csrf-token"))
        return session.actor
    raise Unauthenticated("authentication required: send Authorization: Bearer TOKEN")


CurrentActor = Annotated[Actor, Depends(current_actor)]
