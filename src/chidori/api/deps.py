"""Request-level dependencies: who is calling."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Header, Request

from chidori.errors import Unauthenticated
from chidori.services.identity import Actor, IdentityService
from chidori.ui.session import SAFE_METHODS, SessionManager


@dataclass(frozen=True)
class ProxyAuth:
    """Identity set by a trusted reverse proxy (e.g. OIDC in front): the user name is read
    from `header`, only on requests coming from `trusted` networks."""

    header: str | None = None
    trusted: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = field(default=())

    def user(self, request: Request) -> str | None:
        if not self.header or request.client is None:
            return None
        value = request.headers.get(self.header)
        if not value:
            return None
        try:
            address = ipaddress.ip_address(request.client.host)
        except ValueError:
            return None
        return value.strip() if any(address in net for net in self.trusted) else None


def client_address(request: Request) -> str | None:
    return request.client.host if request.client else None


def current_actor(request: Request, authorization: Annotated[str | None, Header()] = None) -> Actor:
    """The authenticated caller (401 otherwise), with the client address for the audit trail."""
    identity: IdentityService = request.app.state.identity
    source = client_address(request)
    if authorization:
        return Actor(identity.authenticate(authorization), source)
    proxy: ProxyAuth = request.app.state.proxy_auth
    proxied = proxy.user(request)
    if proxied is not None:
        return Actor(identity.proxy_principal(proxied), source)
    sessions: SessionManager | None = getattr(request.app.state, "sessions", None)
    session = sessions.read(request) if sessions is not None else None
    if session is not None:
        if request.method not in SAFE_METHODS:
            SessionManager.check_csrf(session, request.headers.get("x-csrf-token"))
        return session.actor
    raise Unauthenticated("authentication required: send Authorization: Bearer TOKEN")


CurrentActor = Annotated[Actor, Depends(current_actor)]
