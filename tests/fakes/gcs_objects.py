"""A fake of the Cloud Storage JSON API at the transport the official client uses
(`google-cloud-storage`), for the objects Dataproc writes a driver's output into, built from
the published JSON API reference (objects.list, objects.get with `alt=media`). Not verified
against the live service.

What it does: `GET /storage/v1/b/BUCKET/o?prefix=` (the objects under a prefix, in name
order, one page: `nextPageToken` never set) and `GET /download/storage/v1/b/BUCKET/o/NAME
?alt=media` with or without `Range: bytes=A-B` (206 with `Content-Range`, 416 past the end,
404 for an unknown object). Objects grow by `append`, as a driver's output does.

What it does not do: check credentials, generations or preconditions, send checksums
(`x-goog-hash`), paginate, serve uploads, metadata updates, ACLs, or any other resource.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

_LIST = re.compile(r"^/storage/v1/b/([^/]+)/o$")
_MEDIA = re.compile(r"^/download/storage/v1/b/([^/]+)/o/(.+)$")
_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")

Answer = tuple[int, bytes, dict[str, str]]


@dataclass
class FakeGcs:
    objects: dict[tuple[str, str], bytearray] = field(default_factory=dict)
    ranges: list[str] = field(default_factory=list)  # the Range headers downloads asked
    lock: threading.Lock = field(default_factory=threading.Lock)

    def append(self, uri: str, data: bytes) -> None:
        """Grow the object at gs://bucket/name by `data` (made if missing)."""
        bucket, name = uri[len("gs://") :].split("/", 1)
        with self.lock:
            self.objects.setdefault((bucket, name), bytearray()).extend(data)

    def handles(self, path: str) -> bool:
        return path.startswith(("/storage/v1/", "/download/storage/v1/"))

    def handle(self, path: str, query: dict[str, str], headers: dict[str, str]) -> Answer:
        with self.lock:
            if found := _LIST.match(path):
                return self._list(unquote(found.group(1)), query.get("prefix", ""))
            if (found := _MEDIA.match(path)) and query.get("alt") == "media":
                key = (unquote(found.group(1)), unquote(found.group(2)))
                return self._media(key, headers.get("range", ""))
        return _json(404, {"error": {"code": 404, "message": f"no API {path}"}})

    def _list(self, bucket: str, prefix: str) -> Answer:
        items = [
            {
                "kind": "storage#object",
                "bucket": bucket,
                "name": name,
                "size": str(len(data)),
                "generation": "1",
                "metageneration": "1",
                "contentType": "text/plain",
            }
            for (b, name), data in sorted(self.objects.items())
            if b == bucket and name.startswith(prefix)
        ]
        return _json(200, {"kind": "storage#objects", "items": items})

    def _media(self, key: tuple[str, str], wanted: str) -> Answer:
        data = self.objects.get(key)
        if data is None:
            return _json(404, {"error": {"code": 404, "message": f"No such object: {key[1]}"}})
        self.ranges.append(wanted)
        if not wanted:
            return 200, bytes(data), {"Content-Type": "text/plain"}
        found = _RANGE.match(wanted)
        if found is None:
            return _json(400, {"error": {"code": 400, "message": f"bad Range {wanted!r}"}})
        first = int(found.group(1))
        last = min(int(found.group(2)) if found.group(2) else len(data) - 1, len(data) - 1)
        if first >= len(data):
            headers = {"Content-Range": f"bytes */{len(data)}"}
            return 416, b"", headers
        headers = {
            "Content-Type": "text/plain",
            "Content-Range": f"bytes {first}-{last}/{len(data)}",
        }
        return 206, bytes(data[first : last + 1]), headers


def _json(status: int, body: Any) -> Answer:
    return status, json.dumps(body).encode(), {"Content-Type": "application/json"}
