"""Secrets the server keeps under CHIDORI_HOME: the first admin's token, the signing key."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


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


def ensure_secret_key(configured: str | None, home: Path) -> bytes:
    """The key that signs UI sessions and share links: CHIDORI_SECRET_KEY, else one kept in
    `home/secret.key` (mode 0600), created on first start. Replicas must share it."""
    if configured:
        return configured.encode()
    path = home / "secret.key"
    if path.exists():
        key = path.read_text().strip()
        if key:
            return key.encode()
    home.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(key + "\n")
    return key.encode()
