"""Signed, expiring tokens (HMAC-SHA256) for UI sessions and, later, share links."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any


class BadSignature(Exception):
    """Tampered, malformed, expired, or signed for another purpose."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def _mac(self, purpose: str, body: str) -> str:
        digest = hmac.new(self._key, f"{purpose}.{body}".encode(), hashlib.sha256).digest()
        return _b64(digest)

    def sign(self, purpose: str, payload: dict[str, Any], ttl_seconds: float) -> str:
        """A token carrying `payload`, valid for `ttl_seconds`, only for `purpose`."""
        body = _b64(
            json.dumps(
                {**payload, "exp": int(time.time() + ttl_seconds)}, separators=(",", ":")
            ).encode()
        )
        return f"{body}.{self._mac(purpose, body)}"

    def verify(self, purpose: str, token: str) -> dict[str, Any]:
        """The payload of a valid token; BadSignature otherwise."""
        body, sep, mac = token.partition(".")
        if not sep or not hmac.compare_digest(mac, self._mac(purpose, body)):
            raise BadSignature("bad signature")
        try:
            payload = json.loads(_unb64(body))
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadSignature("malformed") from exc
        if not isinstance(payload, dict) or not isinstance(payload.get("exp"), int):
            raise BadSignature("malformed")
        if payload["exp"] < time.time():
            raise BadSignature("expired")
        return payload
