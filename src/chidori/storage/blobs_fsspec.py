"""Object stores through fsspec: S3 and S3-compatible services (`s3://bucket/prefix`, via
s3fs), GCS (`gs://`, gcsfs) and Azure Blob (`az://`/`abfs://`, adlfs). Optional extras
(`pip install 'chidori[s3]'`, `[gcs]`, `[azure-blob]`), imported only when chosen.

Credentials come from each library's usual environment (for S3: `AWS_ACCESS_KEY_ID`,
`AWS_SECRET_ACCESS_KEY`, `AWS_ENDPOINT_URL` for S3-compatible services, instance roles), never
from the URL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fsspec  # type: ignore[import-untyped]

from chidori.storage.blobs import BlobError, BlobInfo, BlobStore, check_key


class FsspecBlobs(BlobStore):
    """Objects under `url` (a bucket and an optional prefix) in an fsspec file system."""

    def __init__(self, url: str) -> None:
        protocol, _, rest = url.partition("://")
        if not rest.strip("/"):
            raise ValueError(f"CHIDORI_STORAGE_URL needs a bucket: {url}")
        try:
            self._fs: Any = fsspec.filesystem(protocol)
        except (ImportError, ValueError) as exc:
            raise ValueError(
                f"CHIDORI_STORAGE_URL {url}: no file system for {protocol!r} ({exc}); install "
                "the matching extra (chidori[s3], chidori[gcs] or chidori[azure-blob])"
            ) from exc
        self._url = url
        self._base = rest.strip("/")

    def describe(self) -> str:
        return self._url

    def _path(self, key: str) -> str:
        return f"{self._base}/{check_key(key)}"

    def put_bytes(self, key: str, data: bytes) -> None:
        try:
            self._fs.pipe_file(self._path(key), data)
        except OSError as exc:
            raise BlobError(f"storage write failed for {key}: {exc}") from exc

    def put_file(self, key: str, path: Path) -> None:
        try:
            self._fs.put_file(str(path), self._path(key))
        except OSError as exc:
            raise BlobError(f"storage write failed for {key}: {exc}") from exc

    def size(self, key: str) -> int | None:
        try:
            return int(self._fs.info(self._path(key))["size"])
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise BlobError(f"storage read failed for {key}: {exc}") from exc

    def read(self, key: str, start: int = 0, length: int | None = None) -> bytes:
        if length == 0:
            return b""
        ranged = start > 0 or length is not None
        end = None if length is None else start + length
        try:
            if ranged:
                data: bytes = self._fs.cat_file(self._path(key), start=start, end=end)
            else:
                data = self._fs.cat_file(self._path(key))
            return data
        except FileNotFoundError as exc:
            raise KeyError(key) from exc
        except OSError as exc:
            # S3 answers 416 to a range of an empty object or past its end: nothing there.
            if ranged and (size := self.size(key)) is not None and start >= size:
                return b""
            raise BlobError(f"storage read failed for {key}: {exc}") from exc

    def list(self, prefix: str) -> list[BlobInfo]:
        folder = prefix.rpartition("/")[0]
        root = f"{self._base}/{folder}" if folder else self._base
        try:
            self._fs.invalidate_cache(root)
            found = self._fs.find(root, detail=True)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise BlobError(f"storage listing failed for {prefix}: {exc}") from exc
        infos = []
        for path, info in found.items():
            key = path.removeprefix(self._base + "/")
            if key.startswith(prefix) and info.get("type", "file") == "file":
                infos.append(BlobInfo(key, int(info.get("size") or 0), _modified(info)))
        return sorted(infos, key=lambda info: info.key)

    def delete(self, key: str) -> None:
        try:
            self._fs.rm_file(self._path(key))
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise BlobError(f"storage delete failed for {key}: {exc}") from exc


def _modified(info: dict[str, Any]) -> datetime:
    for name in ("LastModified", "mtime", "last_modified", "updated"):
        value = info.get(name)
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=UTC)
        if isinstance(value, int | float):
            return datetime.fromtimestamp(value, UTC)
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                pass
    return datetime.now(UTC)
