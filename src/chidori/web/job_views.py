"""How both HTTP edges show jobs: ids as they may appear in a URL, list cursors, the redacted
spec, Spark progress, and a whole log as a download. The API's JSON and the UI's pages use the
same ones, so a cursor from one works in the other and both redact alike."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from typing import Any

from starlette.responses import StreamingResponse

from chidori.domain.errors import InvalidRequest
from chidori.domain.records import Job
from chidori.domain.redact import redact_args, redact_conf
from chidori.domain.spark_progress import COUNT_FIELDS

MAX_ID = 2**63 - 1
"""The largest id a database row can have (a signed 64-bit integer)."""


def public_spec(job: Job) -> dict[str, Any]:
    """The spec as shown to anyone: secret-looking conf values and args redacted."""
    shown = job.spec.stored_dict()
    shown["conf"] = redact_conf(job.spec.conf)
    shown["args"] = redact_args(job.spec.args)
    return shown


def progress_view(progress: dict[str, Any] | None) -> dict[str, Any] | None:
    """A progress record as both edges show it (docs/progress.md): `updated_at`, `final` and
    the counts, without the stage list; None when no progress is known. Templates get the
    same dict (`job.progress` through this) or None."""
    if not isinstance(progress, dict) or "updated_at" not in progress:
        return None
    shown: dict[str, Any] = {
        "updated_at": progress["updated_at"],
        "final": bool(progress.get("final")),
    }
    for name in COUNT_FIELDS:
        value = progress.get(name)
        shown[name] = value if isinstance(value, int) else 0
    return shown


def progress_detail_view(progress: dict[str, Any] | None) -> dict[str, Any] | None:
    """`progress_view` with the stage list (newest last), for the progress endpoint and the
    share page's data."""
    shown = progress_view(progress)
    if shown is None or progress is None:
        return None
    return {**shown, "stages": list(progress.get("stages") or [])}


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
