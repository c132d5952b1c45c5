"""Reading and writing in folders a job controls, without following its links.

A sandboxed job owns its working folder: it can put a symlink where the server expects a
file (`control/out/3.json -> /etc/shadow`) or swap a whole subfolder for one. The server runs
as root, so every path it uses inside such a folder is opened component by component from a
folder only the server can change, with O_NOFOLLOW, and only regular files with one link
are read.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Sequence
from pathlib import Path

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class JobFolder:
    """`trusted / parts...`: `trusted` is the server's own; everything below may be the job's."""

    def __init__(self, trusted: Path, parts: Sequence[str] = ()) -> None:
        self._trusted = trusted
        self._parts = list(parts)

    def child(self, *parts: str) -> JobFolder:
        return JobFolder(self._trusted, [*self._parts, *parts])

    def _open(self, parts: Sequence[str], create: bool = False) -> int | None:
        """A descriptor of the folder `parts` below this one, or None if it is missing or any
        part is not a real folder."""
        try:
            fd = os.open(self._trusted, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return None
        for part in [*self._parts, *parts]:
            try:
                if create:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(part, 0o755, dir_fd=fd)
                next_fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError:
                os.close(fd)
                return None
            os.close(fd)
            fd = next_fd
        return fd

    def read(self, *path: str, limit: int = 1024 * 1024) -> bytes | None:
        """The content of a regular file (at most `limit` bytes); None if it is missing, a
        link, or anything but a plain file."""
        folder = self._open(path[:-1])
        if folder is None:
            return None
        try:
            fd = os.open(
                path[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=folder
            )
        except OSError:
            return None
        finally:
            os.close(folder)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
                return None
            chunks, left = [], limit
            while left > 0 and (chunk := os.read(fd, min(left, 65536))):
                chunks.append(chunk)
                left -= len(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)

    def exists(self, *path: str) -> bool:
        """Whether the entry is there (a link counts: it is not followed)."""
        folder = self._open(path[:-1])
        if folder is None:
            return False
        try:
            os.stat(path[-1], dir_fd=folder, follow_symlinks=False)
            return True
        except OSError:
            return False
        finally:
            os.close(folder)

    def write(self, *path: str, data: bytes) -> bool:
        """Write a file atomically (a fresh temporary file, then a rename over the name),
        creating missing folders. False if a part of the way is not a real folder."""
        folder = self._open(path[:-1], create=True)
        if folder is None:
            return False
        temporary = f".{path[-1]}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(
                temporary,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o644,
                dir_fd=folder,
            )
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
            os.replace(temporary, path[-1], src_dir_fd=folder, dst_dir_fd=folder)
            return True
        except OSError:
            return False
        finally:
            os.close(folder)
