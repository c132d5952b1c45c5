"""Dataproc driver output copied from Cloud Storage, through the official
`google-cloud-storage` client (the `dataproc-logs` extra; this is the only module that imports
it).

Dataproc writes a driver's output as objects `<uri>.000000000`, `<uri>.000000001`, ... under
the place it names (a batch's `runtimeInfo.outputUri`, a job's `driverOutputResourceUri`).
They are read in name order, each from the byte where the last read stopped (a media download
with `Range`), never from the start again while this process follows the run. The position is
a cache: a process that has none (a replica that adopted the run, whose log is written again
from line 0) reads from the first object and skips the lines already copied.

Not verified against the live service: tested through the client against a fake of the GCS
JSON API at its transport (tests/fakes/gcs_objects.py).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from google.api_core import exceptions as google_errors
from google.auth import credentials as google_credentials
from google.cloud import storage  # type: ignore[attr-defined,unused-ignore]

from chidori.backends.remote import LogPage, RemoteUnavailable
from chidori.domain.errors import BackendError

_CHUNK = 4 * 1024 * 1024  # bytes read per object per call while the run goes
_MAX_LINE = 65536  # a longer line is cut (the service's output, not Chidori's)
# No retries inside a call: the watch tries again at its next turn, with backoff.


@dataclass
class _Cursor:
    lines: int = 0  # lines handed out so far (the caller's next `start`)
    name: str = ""  # the object being read ("" before the first)
    offset: int = 0  # its next byte, always just after a newline or at its end


class DriverOutput:
    """Reads driver output objects incrementally, one cursor per output place."""

    def __init__(
        self,
        credentials: google_credentials.Credentials,
        project: str,
        api_endpoint: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        options: dict[str, Any] = {"api_endpoint": api_endpoint} if api_endpoint else {}
        self._client = storage.Client(
            project=project, credentials=credentials, client_options=options
        )
        self._timeout = timeout
        self._cursors: dict[str, _Cursor] = {}
        self._lock = threading.Lock()

    def read(self, uri: str, start: int, final: bool) -> LogPage:
        """Lines `start`.. of the output under `uri` (gs://bucket/prefix). While the run goes
        an unfinished last line is held back; when `final`, everything left is read."""
        bucket, prefix = _split(uri)
        with self._lock:
            cursor = self._cursors.get(uri)
        if cursor is None or cursor.lines != start:
            cursor = _Cursor()  # no position for this start: from the beginning, skipping
        skip = start - cursor.lines
        lines: list[str] = []
        try:
            listed = self._client.list_blobs(
                bucket, prefix=prefix, timeout=self._timeout, retry=None
            )
            objects = sorted(
                (b for b in listed if b.name >= cursor.name and _is_part(b.name, prefix)),
                key=lambda blob: blob.name,
            )
            for index, blob in enumerate(objects):
                if blob.name != cursor.name:
                    cursor.name, cursor.offset = blob.name, 0
                last = index == len(objects) - 1
                size = blob.size or 0
                while size > cursor.offset:
                    end = size if final else min(size, cursor.offset + _CHUNK)
                    data = blob.download_as_bytes(
                        start=cursor.offset, end=end - 1, checksum=None, timeout=self._timeout,
                        retry=None,
                    )  # fmt: skip
                    if not data:
                        break
                    complete = data.rfind(b"\n") + 1
                    if end == size and (final or not last):
                        complete = len(data)  # the object is whole: its last line too
                    if complete == 0:
                        break  # one unfinished line: held back until it ends
                    lines.extend(_lines(data[:complete]))
                    cursor.offset += complete
                    if not final:
                        break
        except google_errors.GoogleAPICallError as exc:
            if isinstance(exc, google_errors.NotFound):
                return LogPage([], start)  # nothing written yet
            if isinstance(exc, google_errors.Forbidden | google_errors.Unauthorized):
                raise BackendError(f"cloud storage refused reading {uri}: {exc.message}") from exc
            raise RemoteUnavailable(f"cloud storage: {exc.message}"[:600]) from exc
        except OSError as exc:
            raise RemoteUnavailable(f"cloud storage: {exc}") from exc
        dropped = min(skip, len(lines))
        cursor.lines += len(lines)
        with self._lock:
            self._cursors[uri] = cursor
            if final:
                self._cursors.pop(uri, None)
        return LogPage(lines[dropped:], cursor.lines if skip <= len(lines) else start)


def _split(uri: str) -> tuple[str, str]:
    if not uri.startswith("gs://") or "/" not in uri[5:]:
        raise BackendError(f"dataproc named the driver output {uri!r}, not a gs:// object")
    bucket, prefix = uri[5:].split("/", 1)
    return bucket, prefix


def _is_part(name: str, prefix: str) -> bool:
    """`prefix.000000000` and so on: not another run's output that shares the prefix."""
    rest = name[len(prefix) :]
    return rest.startswith(".") and rest[1:].isdigit()


def _lines(data: bytes) -> list[str]:
    text = data.decode("utf-8", errors="replace")
    return [line[:_MAX_LINE] for line in text.rstrip("\n").split("\n")] if text else []
