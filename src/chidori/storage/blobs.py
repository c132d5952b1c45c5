"""Shared storage: named byte objects every replica can read (uploads, driver logs, Spark
event logs), so nothing a job needs or leaves behind lives only on one replica's disk.

One small interface, three homes, chosen by `CHIDORI_STORAGE_URL`:

- `DirectoryBlobs`: files under a folder (`file:///path`). The embedded default (under
  `CHIDORI_HOME`, one host), or a volume every replica mounts;
- `DatabaseBlobs`: rows of the Chidori database (`db`), in 1 MiB chunks. The default on
  PostgreSQL: replicas share it already, so HA needs nothing more for small deployments;
- `FsspecBlobs` (`chidori.storage.blobs_fsspec`, imported only when chosen): S3 and S3-compatible
  services, GCS and Azure Blob through fsspec (`s3://bucket/prefix`, `gs://…`, `az://…`),
  with credentials from the environment, never from the URL.

Keys are `/`-separated paths of safe names (`uploads/<sha>/<name>`); writers write a whole
object once (no appends), so readers never see half an object.
"""

from __future__ import annotations

import os
import re
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from chidori.domain.errors import Unavailable

CHUNK_BYTES = 1024 * 1024  # one database row's share of an object
_KEY = re.compile(r"^[A-Za-z0-9._\-]+(/[A-Za-z0-9._\-]+)*$")


class BlobError(Unavailable):
    """The shared storage could not be reached or refused an operation."""


@dataclass(frozen=True)
class BlobInfo:
    key: str
    size: int
    modified: datetime


def check_key(key: str) -> str:
    """A key is a relative path of safe names: no `..`, no empty parts, no leading `/`."""
    if not _KEY.match(key) or any(part in (".", "..") for part in key.split("/")):
        raise ValueError(f"not a storage key: {key!r}")
    return key


class BlobStore(ABC):
    """What Chidori needs of a shared store; each call is one round trip or a few."""

    #: Whether replicas on other hosts read what this one writes (a local folder does not).
    shared: bool = True

    @abstractmethod
    def describe(self) -> str:
        """Where objects go, without secrets (for logs and /readyz)."""

    @abstractmethod
    def put_bytes(self, key: str, data: bytes) -> None:
        """Database `data` under `key`, replacing any object there."""

    def put_file(self, key: str, path: Path) -> None:
        """Database the file at `path` under `key` (stores may stream it)."""
        self.put_bytes(key, path.read_bytes())

    @abstractmethod
    def size(self, key: str) -> int | None:
        """The object's size in bytes, or None when there is none."""

    @abstractmethod
    def read(self, key: str, start: int = 0, length: int | None = None) -> bytes:
        """Bytes `start`..`start + length` of the object (to its end when `length` is None);
        raises KeyError when it does not exist."""

    def fetch(self, key: str, target: Path) -> None:
        """Copy the object into the local file `target`, atomically (a reader of `target`
        sees all of it or nothing). Raises KeyError when it does not exist."""
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".fetch-")
        try:
            with os.fdopen(fd, "wb") as out:
                position = 0
                while True:
                    chunk = self.read(key, position, 8 * CHUNK_BYTES)
                    out.write(chunk)
                    position += len(chunk)
                    if len(chunk) < 8 * CHUNK_BYTES:
                        break
            os.replace(tmp, target)
        except BaseException:
            os.unlink(tmp)
            raise

    @abstractmethod
    def list(self, prefix: str) -> list[BlobInfo]:
        """Every object whose key starts with `prefix` (a folder ending in `/`), by key."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object, if it exists."""


class DirectoryBlobs(BlobStore):
    """Objects as files under `root`: one host's disk, or a volume all replicas mount."""

    def __init__(self, root: Path, shared: bool = False) -> None:
        self._root = root
        self.shared = shared

    def describe(self) -> str:
        return f"folder {self._root}" + (" (shared)" if self.shared else " (this host only)")

    def _path(self, key: str) -> Path:
        return self._root / check_key(key)

    def put_bytes(self, key: str, data: bytes) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".put-")
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)

    def size(self, key: str) -> int | None:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            return None

    def read(self, key: str, start: int = 0, length: int | None = None) -> bytes:
        try:
            with open(self._path(key), "rb") as handle:
                handle.seek(start)
                return handle.read() if length is None else handle.read(length)
        except FileNotFoundError as exc:
            raise KeyError(key) from exc

    def list(self, prefix: str) -> list[BlobInfo]:
        folder = prefix.rpartition("/")[0]
        base = self._root / folder if folder else self._root
        found: list[BlobInfo] = []
        if not base.is_dir():
            return found
        for dirpath, _, names in os.walk(base):
            for name in names:
                if name.startswith("."):
                    continue  # a write in progress
                path = Path(dirpath) / name
                key = path.relative_to(self._root).as_posix()
                if key.startswith(prefix):
                    stat = path.stat()
                    modified = datetime.fromtimestamp(stat.st_mtime, UTC)
                    found.append(BlobInfo(key, stat.st_size, modified))
        return sorted(found, key=lambda info: info.key)

    def delete(self, key: str) -> None:
        with suppress(FileNotFoundError):
            self._path(key).unlink()


SessionFactory = Callable[[], AbstractContextManager[Session]]


class DatabaseBlobs(BlobStore):
    """Objects as rows of the Chidori database (tables `blobs` and `blob_chunks`), in chunks
    of `CHUNK_BYTES` so no statement carries a whole large object."""

    def __init__(self, writing: SessionFactory, reading: SessionFactory, dialect: str) -> None:
        self._writing = writing
        self._reading = reading
        self._dialect = dialect
        # SQLite is one file on one host: shared only in the sense that one server uses it.
        self.shared = dialect != "sqlite"

    def describe(self) -> str:
        return f"the {self._dialect} database"

    def put_bytes(self, key: str, data: bytes) -> None:
        from chidori.store.blob_models import BlobChunkRow, BlobRow

        check_key(key)
        with self._writing() as session:
            session.execute(delete(BlobChunkRow).where(BlobChunkRow.key == key))
            session.execute(delete(BlobRow).where(BlobRow.key == key))
            session.add(BlobRow(key=key, size=len(data), modified_at=datetime.now(UTC)))
            session.flush()
            session.add_all(
                BlobChunkRow(key=key, number=number, data=data[start : start + CHUNK_BYTES])
                for number, start in enumerate(range(0, max(len(data), 1), CHUNK_BYTES))
            )

    def size(self, key: str) -> int | None:
        from chidori.store.blob_models import BlobRow

        with self._reading() as session:
            found: int | None = session.scalar(select(BlobRow.size).where(BlobRow.key == key))
            return found

    def read(self, key: str, start: int = 0, length: int | None = None) -> bytes:
        from chidori.store.blob_models import BlobChunkRow, BlobRow

        with self._reading() as session:
            total = session.scalar(select(BlobRow.size).where(BlobRow.key == key))
            if total is None:
                raise KeyError(key)
            end = total if length is None else min(total, start + length)
            if start >= end:
                return b""
            first, last = start // CHUNK_BYTES, (end - 1) // CHUNK_BYTES
            rows = session.execute(
                select(BlobChunkRow.number, BlobChunkRow.data)
                .where(
                    BlobChunkRow.key == key,
                    BlobChunkRow.number >= first,
                    BlobChunkRow.number <= last,
                )
                .order_by(BlobChunkRow.number)
            ).all()
        joined = b"".join(bytes(row.data) for row in rows)
        offset = start - first * CHUNK_BYTES
        return joined[offset : offset + (end - start)]

    def list(self, prefix: str) -> list[BlobInfo]:
        from chidori.store.blob_models import BlobRow

        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        with self._reading() as session:
            rows = session.execute(
                select(BlobRow.key, BlobRow.size, BlobRow.modified_at)
                .where(BlobRow.key.like(escaped + "%", escape="\\"))
                .order_by(BlobRow.key)
            ).all()
        return [BlobInfo(r.key, r.size, r.modified_at) for r in rows]

    def delete(self, key: str) -> None:
        from chidori.store.blob_models import BlobChunkRow, BlobRow

        with self._writing() as session:
            session.execute(delete(BlobChunkRow).where(BlobChunkRow.key == key))
            session.execute(delete(BlobRow).where(BlobRow.key == key))

    def total_bytes(self) -> int:
        from chidori.store.blob_models import BlobRow

        with self._reading() as session:
            return int(session.scalar(select(func.coalesce(func.sum(BlobRow.size), 0))) or 0)


def open_blobs(url: str, database: Any) -> BlobStore | None:
    """The store `url` names (`CHIDORI_STORAGE_URL`), or None when nothing needs sharing
    (`local`: uploads and logs stay on this host's disk).

        Empty: the database on PostgreSQL (replicas share it already, so HA needs no more setup);
        None on SQLite (one server on one host: uploads and logs stay in `home`, as they are).
        `database`: the Database (for `db`)."""
    if url == "local":
        return None  # one server on one host, whatever the database
    if not url:
        if database.dialect == "sqlite":
            return None
        url = "db"
    if url in ("db", "database"):
        return DatabaseBlobs(database.writing, database.reading, database.dialect)
    parts = urlsplit(url)
    if parts.username or parts.password or parts.query:
        raise ValueError(
            "CHIDORI_STORAGE_URL must not carry credentials or options: use the environment"
        )
    if parts.scheme == "file":
        path = Path(parts.path)
        if not path.is_absolute() or parts.netloc:
            raise ValueError(f"CHIDORI_STORAGE_URL: a file:// URL needs an absolute path: {url}")
        return DirectoryBlobs(path, shared=True)  # a volume every replica mounts
    from chidori.storage.blobs_fsspec import FsspecBlobs

    return FsspecBlobs(url)


def iter_range(store: BlobStore, key: str, start: int, end: int, chunk: int) -> Iterator[bytes]:
    """The object's bytes `start`..`end` in pieces of at most `chunk` bytes."""
    position = start
    while position < end:
        piece = store.read(key, position, min(chunk, end - position))
        if not piece:
            return
        yield piece
        position += len(piece)
