"""Who is calling. For now one identity: the admin, holding the admin token.

Tokens arrive as `Authorization: Bearer TOKEN`, or as HTTP basic auth (any user name, the
token as password) for clients that can only send basic auth.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from chidori.errors import Unauthenticated


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class Authenticator:
    """Checks credentials against the admin token (kept only as a hash in memory)."""

    def __init__(self, admin_token: str) -> None:
        self._admin_digest = _digest(admin_token)

    def authenticate(self, authorization: str | None) -> str:
        """The principal's name for a valid `Authorization` header; else Unauthenticated."""
        token = _token_from_header(authorization)
        if token is None:
            raise Unauthenticated("authentication required: send Authorization: Bearer TOKEN")
        if not hmac.compare_digest(_digest(token), self._admin_digest):
            raise Unauthenticated("invalid token")
        return "admin"


def _token_from_header(authorization: str | None) -> str | None:
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


def ensure_admin_token(configured: str | None, home: Path) -> tuple[str, Path | None]:
    """The admin token: CHIDORI_ADMIN_TOKEN if set, else the one in `home/admin.token`,
    created on first start (mode 0600). Returns (token, file it lives in or None)."""
    if configured:
        return configured, None
    path = home / "admin.token"
    if path.exists():
        token = path.read_text().strip()
        if token:
            return token, path
    home.mkdir(parents=True, exist_ok=True)
    token = "chd_" + secrets.token_urlsafe(32)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(token + "\n")
    os.chmod(path, 0o600)
    return token, path
