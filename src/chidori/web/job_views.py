"""How both HTTP edges show jobs: ids as they may appear in a URL, list cursors, the redacted
spec, and a whole log as a download. The API's JSON and the UI's pages use the same ones, so a
cursor from one works in the other and both redact alike."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from typing import Any

from starlette.responses import StreamingResponse

from chidori.domain.errors import InvalidRequest
from chidori.domain.records import Job
from chidori.domain.redact import redact_args, redact_conf

MAX_ID = 2**63 - 1
"""The largest id a database row can have (a signed 64-bit integer)."""


def public_spec(job: Job) -> dict[str, Any]:
    """The spec as shown to anyone: secret-looking conf values and args redacted."""
    shown = job.spec.stored_dict()
    shown["conf"] = redact_conf(job.spec.conf)
    shown["args"] = redact_args(job.spec.args)
    return shown


def encode_cursor(before_id: int | None) -> str | None:
    """The opaque cursor of the page after `before_id` (None: there is no next page)."""
    if before_id is None:
        return None
    return base64.urlsafe_b64encode(f"b:{before_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int | None:
    """The id a cursor continues before. Raises InvalidRequest (field `cursor`) for anything
    `encode_cursor` did not make."""
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, value = raw.split(":", 1)
        if prefix != "b" or not (value.isascii() and value.isdigit()):
            raise ValueError(prefix)
        before_id = int(value)
        if not 1 <= before_id <= MAX_ID:
            raise ValueError(value)
        return before_id
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidRequest.for_field("cursor", "not a cursor returned by this API") from exc


def log_download(filename: str, size: int, chunks: Iterator[bytes]) -> StreamingResponse:
    """A whole log as an attachment, streamed in chunks (never read whole into memory)."""
    return StreamingResponse(
        chunks,
        media_type="text/plain; charset=utf-8",
        headers={
            "Content-Length": str(size),
            "Content-Disposition": f'attachment; filename="{filename}"',
        },
    )
