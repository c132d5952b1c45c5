"""Verifying a JSON Web Signature (RFC 7515) in compact form, signed with a shared HMAC key.

What it accepts: `alg` HS256, HS384 or HS512 (HMAC with SHA-2), with a key of at least the
hash's size (32, 48 or 64 bytes, as RFC 7518 section 3.2 and jjwt require); nothing else
(`none`, RSA, EC and unknown algorithms are refused), and no `crit` header parameters nor
unencoded payloads (`b64: false`, RFC 7797). The signature is compared in constant time.

What it checks of the claims: the payload is a JSON object; `exp` (if present) is a number
and now is before it; `nbf` (if present) is a number and now is not before it. Other claims
(`iss`, `aud`, `sub`, ...) are returned to the caller unchecked. These are the checks jjwt's
`parseSignedClaims` makes for Spark's `JWSFilter` (no clock skew allowed).

General: it knows nothing of Spark or of how its caller configures the key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time
from typing import Any

HMAC_ALGORITHMS = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}
MIN_KEY_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}


class JwsError(Exception):
    """A token that does not verify (the reason is for the server log, not the caller)."""


def b64url_decode(text: str) -> bytes:
    """Base64url without padding (RFC 7515 section 2). Raises ValueError or binascii.Error."""
    if not re.fullmatch(r"[A-Za-z0-9_\-]*", text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def verify_jws(token: str, key: bytes, now: float | None = None) -> dict[str, Any]:
    """The claims of a compact JWS signed with `key` by HS256/384/512. Raises JwsError for a
    bad shape, an unsigned or unknown algorithm, a key too short for it, a wrong signature, a
    payload that is not a JSON object, or `exp`/`nbf` outside the current time (`now`, in
    seconds since the epoch; the clock by default)."""
    parts = token.split(".")
    if len(parts) != 3 or not all(parts):
        raise JwsError("a JWS has three non-empty base64url parts")
    try:
        header = json.loads(b64url_decode(parts[0]))
        payload = b64url_decode(parts[1])
        signature = b64url_decode(parts[2])
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise JwsError(f"malformed JWS: {exc}") from exc
    if not isinstance(header, dict):
        raise JwsError("JWS header is not a JSON object")
    algorithm = header.get("alg")
    if algorithm not in HMAC_ALGORITHMS:
        raise JwsError(f"algorithm {algorithm!r} is not accepted")
    if "crit" in header or header.get("b64") is False:
        raise JwsError("critical header parameters are not supported")
    if len(key) < MIN_KEY_BYTES[algorithm]:
        raise JwsError(f"the key is too short for {algorithm}")
    signing_input = f"{parts[0]}.{parts[1]}".encode("ascii")
    expected = hmac.new(key, signing_input, HMAC_ALGORITHMS[algorithm]).digest()
    if not hmac.compare_digest(expected, signature):
        raise JwsError("signature does not verify")
    try:
        claims = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise JwsError("JWS payload is not JSON") from exc
    if not isinstance(claims, dict):
        raise JwsError("JWS payload is not a JSON object of claims")
    moment = time.time() if now is None else now
    for claim, late in (("exp", True), ("nbf", False)):
        value = claims.get(claim)
        if value is None:
            continue
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise JwsError(f"claim {claim} is not a number")
        if (late and moment >= value) or (not late and moment < value):
            raise JwsError("token expired" if late else "token not valid yet")
    return claims
