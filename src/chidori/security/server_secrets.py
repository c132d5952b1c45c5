"""Secrets the server keeps under CHIDORI_HOME: the first admin's token, the signing key."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path

from chidori.storage.files import write_private


def _kept_secret(path: Path, make: Callable[[], str]) -> str:
    """The secret stored in `path`, created there (mode 0600) on first use."""
    if path.exists():
        kept = path.read_text().strip()
        if kept:
            return kept
    path.parent.mkdir(parents=True, exist_ok=True)
    made = make()
    write_private(path, made + "\n")
    return made


def ensure_admin_token(configured: str | None, home: Path) -> tuple[str, Path | None]:
    """The admin token: CHIDORI_ADMIN_TOKEN if set, else the one in `home/admin.token`,
    created on first start (mode 0600). Returns (token, file it lives in or None)."""
    if configured:
        return configured, None
    path = home / "admin.token"
    return _kept_secret(path, lambda: "chd_" + secrets.token_urlsafe(32)), path


def ensure_secret_key(configured: str | None, home: Path) -> bytes:
    """The key that signs UI sessions and share links: CHIDORI_SECRET_KEY, else one kept in
    `home/secret.key` (mode 0600), created on first start. Replicas must share it."""
    if configured:
        return configured.encode()
    return _kept_secret(home / "secret.key", lambda: secrets.token_urlsafe(48)).encode()
