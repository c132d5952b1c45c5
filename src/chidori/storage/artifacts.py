"""Where applications and their files come from: uploads, allowed local paths, or URLs."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

from chidori.domain.errors import InvalidRequest, NotFound, PayloadTooLarge
from chidori.domain.spec import REMOTE_SCHEMES
from chidori.storage.blobs import BlobStore

UPLOAD_SCHEME = "upload"
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._\-]")
_UPLOAD_URI = re.compile(r"^upload://([0-9a-f]{64})/([A-Za-z0-9._\-]{1,255})$")


@dataclass(frozen=True)
class Upload:
    uri: str
    sha256: str
    size: int


def safe_filename(name: str) -> str:
    base = os.path.basename(name.replace("\\", "/")) or "upload"
    cleaned = _SAFE_NAME.sub("_", base)[:255]
    return cleaned if cleaned not in ("", ".", "..") else "upload"


def upload_key(sha: str, name: str) -> str:
    """Where an upload lives in shared storage."""
    return f"uploads/{sha}/{name}"


class ArtifactStore:
    """Content-addressed uploads under `root`, plus the rules for local application paths.

    With shared storage (`blobs`), each upload is also copied there, and a replica that lacks
    one (it was uploaded to another) fetches it into `root` when a job names it: `root` is
    then this host's cache."""

    def __init__(
        self,
        root: Path,
        app_roots: Iterable[Path],
        max_bytes: int,
        blobs: BlobStore | None = None,
    ) -> None:
        self._root = root
        self._blobs = blobs
        self._root_texts = [os.path.realpath(p) for p in app_roots]
        self._root_prefixes = [
            (root, root if root.endswith(os.sep) else root + os.sep) for root in self._root_texts
        ]
        self._max_bytes = max_bytes

    def save(self, stream: BinaryIO, filename: str) -> Upload:
        """Database an uploaded file; the same content under the same name is stored once."""
        name = safe_filename(filename)
        self._root.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        size = 0
        with tempfile.NamedTemporaryFile(dir=self._root, delete=False, prefix=".part-") as tmp:
            try:
                while chunk := stream.read(1024 * 1024):
                    size += len(chunk)
                    if size > self._max_bytes:
                        raise PayloadTooLarge(f"upload is larger than {self._max_bytes} bytes")
                    digest.update(chunk)
                    tmp.write(chunk)
            except BaseException:
                os.unlink(tmp.name)
                raise
        sha = digest.hexdigest()
        target = self._root / sha / name
        target.parent.mkdir(parents=True, exist_ok=True)
        # Readable by the sandboxed jobs it is linked to (the folder stays the server's).
        os.chmod(tmp.name, 0o644)
        os.replace(tmp.name, target)
        if self._blobs is not None and self._blobs.size(upload_key(sha, name)) != size:
            self._blobs.put_file(upload_key(sha, name), target)
        return Upload(uri=f"{UPLOAD_SCHEME}://{sha}/{name}", sha256=sha, size=size)

    def resolve(self, reference: str, field: str) -> str:
        """Turn a reference from a job spec into what the driver is given: a local path or a
        URL Spark understands. Raises InvalidRequest (naming `field`) for anything not allowed
        or not there. An archive's `#alias` suffix is kept."""
        ref, fragment = reference, ""
        if "#" in reference and not reference.startswith("#"):
            ref, alias = reference.rsplit("#", 1)
            fragment = f"#{alias}"
        scheme = urlsplit(ref).scheme.lower() if "://" in ref or ref.startswith("local:") else ""
        if scheme == UPLOAD_SCHEME:
            return str(self._upload_path(ref, field)) + fragment
        if scheme == "file":
            return str(self._local_path(urlsplit(ref).path, field)) + fragment
        if scheme == "local":
            self._check_local_uri(ref, field)
            return reference
        if scheme in REMOTE_SCHEMES:
            return reference
        if scheme:
            raise InvalidRequest.for_field(
                field,
                f"scheme {scheme!r} is not supported; use a path, upload:// or one of "
                + ", ".join(sorted(REMOTE_SCHEMES)),
            )
        return str(self._local_path(ref, field)) + fragment

    def upload_path(self, uri: str) -> Path:
        """The file behind an upload:// URI; NotFound if it is not stored."""
        match = _UPLOAD_URI.match(uri)
        if not match:
            raise NotFound(f"{uri!r} is not an upload URI")
        path = self._root / match.group(1) / match.group(2)
        if not path.is_file() and not self._fetch(match.group(1), match.group(2), path):
            raise NotFound(f"upload {uri} not found")
        return path

    def _fetch(self, sha: str, name: str, path: Path) -> bool:
        """Copy an upload another replica received from shared storage; False if none has."""
        if self._blobs is None:
            return False
        try:
            self._blobs.fetch(upload_key(sha, name), path)
        except KeyError:
            return False
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            while chunk := handle.read(1024 * 1024):
                digest.update(chunk)
        if digest.hexdigest() != sha:  # content-addressed: what came back must be what went in
            path.unlink()
            return False
        os.chmod(path, 0o644)
        return True

    def stage(self, resolved: str, inputs: Path) -> str:
        """`resolved` (from `resolve`) as a path a sandboxed job can read: an upload is linked
        (or copied, across file systems) into `inputs`, a folder of the job's attempt; any
        other reference is returned as it is."""
        path, fragment = resolved, ""
        if "#" in resolved:
            path, alias = resolved.rsplit("#", 1)
            fragment = f"#{alias}"
        root = str(self._root) + os.sep
        if not path.startswith(root):
            return resolved
        relative = path[len(root) :]
        target = inputs / relative
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(inputs, 0o755)  # noqa: S103 - the job reads its inputs
            if not os.stat(path).st_mode & 0o004:  # stored before uploads were made readable
                os.chmod(path, 0o644)
            try:
                os.link(path, target)
            except OSError:
                shutil.copyfile(path, target)
                os.chmod(target, 0o644)
        return str(target) + fragment

    def _upload_path(self, uri: str, field: str) -> Path:
        try:
            return self.upload_path(uri)
        except NotFound as exc:
            raise InvalidRequest.for_field(field, exc.message) from exc

    def _check_local_uri(self, uri: str, field: str) -> None:
        """A `local:/path` names a file already on every node: Spark reads it in place, so it
        must lie under the app roots like a plain path (it need not exist on this host)."""
        parts = urlsplit(uri)
        if parts.netloc or parts.query or not parts.path.startswith("/"):
            raise InvalidRequest.for_field(field, "write a local: URI as local:/absolute/path")
        # Spark decodes %-escapes (java.net.URI.getPath): check the path it will open.
        self._path_in_roots(unquote(parts.path), field)

    def _path_in_roots(self, path_text: str, field: str) -> str:
        """The real path of `path_text` (relative ones under the first root); InvalidRequest
        if that is outside every app root."""
        if "\x00" in path_text:
            raise InvalidRequest.for_field(field, "path contains a NUL byte")
        # Plain strings, not Path objects: this runs for every file of every submission.
        path = (
            path_text if os.path.isabs(path_text) else os.path.join(self._root_texts[0], path_text)
        )
        try:
            real = os.path.realpath(path)
        except (OSError, ValueError) as exc:
            raise InvalidRequest.for_field(
                field, f"{path_text[:200]!r} is not a usable path"
            ) from exc
        if not any(real == root or real.startswith(prefix) for root, prefix in self._root_prefixes):
            raise InvalidRequest.for_field(
                field,
                f"{path_text[:200]!r} is outside the allowed application roots; upload it with "
                "chidori submit or ask an admin to add its folder to CHIDORI_APP_ROOTS",
            )
        return real

    def _local_path(self, path_text: str, field: str) -> Path:
        real = self._path_in_roots(path_text, field)
        try:
            is_file = os.path.isfile(real)
        except (OSError, ValueError):  # e.g. a name too long for the file system
            is_file = False
        if not is_file:
            raise InvalidRequest.for_field(
                field, f"{path_text[:200]!r} does not exist or is not a file"
            )
        return Path(real)
