"""Where the CLI finds its server and token.

URL: ``--server``, else ``CHIDORI_URL``, else ``http://127.0.0.1:8080``.
Token: ``--token``, else ``CHIDORI_TOKEN``, else ``$CHIDORI_HOME/admin.token``
(``CHIDORI_HOME`` defaults to ``./.chidori``) when readable, else none.
Everything is read when called, never at import time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_HOME = ".chidori"
TOKEN_FILE = "admin.token"  # noqa: S105 (a file name)


@dataclass(frozen=True)
class Settings:
    url: str
    token: str | None


def normalize_url(url: str) -> str:
    """Strip whitespace and trailing slashes; add ``http://`` when no scheme is given."""
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    return url


def resolve_url(flag: str | None, env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    for candidate in (flag, env.get("CHIDORI_URL")):
        if candidate and candidate.strip():
            return normalize_url(candidate)
    return DEFAULT_URL


def chidori_home(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    return Path(env.get("CHIDORI_HOME") or DEFAULT_HOME)


def resolve_token(flag: str | None, env: Mapping[str, str] | None = None) -> str | None:
    env = os.environ if env is None else env
    for candidate in (flag, env.get("CHIDORI_TOKEN")):
        if candidate and candidate.strip():
            return candidate.strip()
    try:
        token = (chidori_home(env) / TOKEN_FILE).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return token or None


def resolve(
    server: str | None = None, token: str | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    return Settings(url=resolve_url(server, env), token=resolve_token(token, env))
