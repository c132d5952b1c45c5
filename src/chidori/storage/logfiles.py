"""Reading driver logs without holding them in memory: every log route reads through here.

A log can be far larger than the server's memory allows to hold (a chatty driver writes
hundreds of MiB), and the server hosts every driver, so no answer reads a whole log:

- `read_window`: bytes from an offset, or the last lines, at most `MAX_ANSWER_BYTES`, with the
  offset to continue from;
- `LineIndex.read_lines`: Livy's line-numbered windows (`from`, `size`, `total`), found with a
  sparse index of newline counts per block, so no request scans more than one block and an
  answer's lines fill at most `MAX_ANSWER_BYTES`;
- `stream_file`: a whole log, in chunks, for downloads;
- `read_from`: the next chunk of a growing log, for follow streams.

Logs are append-only while their driver runs; a file that shrinks or is replaced (a warm
driver's log moved into place) is indexed again.
"""

from __future__ import annotations

import bisect
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

MAX_ANSWER_BYTES = 1024 * 1024  # the most one non-streamed log answer carries
STREAM_CHUNK_BYTES = 256 * 1024  # one chunk of a download
FOLLOW_CHUNK_BYTES = 256 * 1024  # the most one read of a follow stream sends
_SCAN_BLOCK = 1024 * 1024  # lines are counted, and indexed, per block of this size
_INDEXED_LOGS = 256  # line indexes kept (least recently used dropped first)
_NEWLINE = 0x0A


class LogReader(Protocol):
    """A log as it is now: `size` bytes, read by offset. A file on this host (`FileLog`) or
    the copies of another replica's log in shared storage (`chidori.storage.logship.SharedLog`)."""

    size: int

    def read(self, start: int, length: int) -> bytes: ...


class FileLog:
    """A log file on this host, opened once; `size` is its size when opened (a log being
    written grows past it: readers stop there)."""

    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle
        stat = os.fstat(handle.fileno())
        self.size = stat.st_size
        self.identity = (stat.st_dev, stat.st_ino)

    @classmethod
    def open(cls, path: Path | None) -> FileLog | None:
        if path is None:
            return None
        try:
            return cls(open(path, "rb"))
        except (FileNotFoundError, NotADirectoryError):
            return None

    def read(self, start: int, length: int) -> bytes:
        return os.pread(self._handle.fileno(), max(0, length), start)

    def close(self) -> None:
        self._handle.close()


@dataclass(frozen=True)
class LogChunk:
    """Bytes `start`..`next_offset` of a log that was `size` bytes long when read."""

    data: bytes
    next_offset: int
    size: int
    start: int = 0


@dataclass(frozen=True)
class LineWindow:
    """Lines `start`..`start + len(lines)` of a log of `total` lines (Livy's `from`, `total`,
    `log`)."""

    start: int
    total: int
    lines: list[str]


def read_window(
    log: LogReader | None,
    offset: int | None,
    tail_lines: int | None,
    limit: int = MAX_ANSWER_BYTES,
) -> LogChunk:
    """At most `limit` bytes of the log: from byte `offset` (default 0), or its last
    `tail_lines` lines (the last `limit` bytes of them, starting on a line when one starts in
    them). A window that stops before the end ends after a line, or on a character boundary
    when no line ends in it, so windows read one after another add up to the file."""
    if log is None:
        return LogChunk(b"", 0, 0)
    size = log.size
    if tail_lines is not None:
        floor = max(0, size - limit)
        start = _tail_start(log, size, tail_lines, floor)
        if start > floor or floor == 0:
            return LogChunk(log.read(start, size - start), size, size, start)
        # More lines than fit: the last `limit` bytes, from the first line that starts in
        # them (unless a single line fills them all).
        before, data = log.read(floor - 1, 1), log.read(floor, size - floor)
        newline = data.find(b"\n")
        if before != b"\n" and 0 <= newline < len(data) - 1:
            return LogChunk(data[newline + 1 :], size, size, floor + newline + 1)
        return LogChunk(data, size, size, floor)
    start = min(max(offset or 0, 0), size)
    data = log.read(start, min(limit, size - start))
    if start + len(data) < size:
        data = _whole_end(data)
    return LogChunk(data, start + len(data), size, start)


def stream_log(log: LogReader, chunk: int = STREAM_CHUNK_BYTES) -> Iterator[bytes]:
    """The log's `size` bytes in chunks (a log still being written stops at the size it had
    when the download started, as its Content-Length says)."""
    # Shared logs are read in their stored segments: one request each, not one per chunk.
    chunk = max(chunk, getattr(log, "preferred_chunk", 0))
    position = 0
    while position < log.size:
        data = log.read(position, min(chunk, log.size - position))
        if not data:
            return
        position += len(data)
        yield data


def _whole_end(data: bytes) -> bytes:
    """`data` cut after its last newline, or else before a character cut in two."""
    newline = data.rfind(b"\n")
    if newline >= 0:
        return data[: newline + 1]
    # UTF-8: continuation bytes are 10xxxxxx; back off an unfinished sequence (at most 3).
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 != 0x80:
            needed = 2 if byte >= 0xC0 else 1
            needed = 3 if byte >= 0xE0 else needed
            needed = 4 if byte >= 0xF0 else needed
            return data[: len(data) - back] if needed > back and len(data) > back else data
    return data


def _tail_start(log: LogReader, size: int, lines: int, floor: int) -> int:
    """Offset where the last `lines` lines begin, or `floor` if they begin before it."""
    if lines <= 0:
        return size
    position = size
    found = 0
    # A final newline ends the last line; it does not start a new one.
    end = size - 1
    while position > floor:
        step = min(64 * 1024, position - floor)
        position -= step
        chunk = log.read(position, step)
        at = len(chunk)
        while True:
            at = chunk.rfind(b"\n", 0, at)
            if at < 0:
                break
            if position + at != end:
                found += 1
                if found == lines:
                    return position + at + 1
    return floor


@dataclass
class _Index:
    identity: object  # a file's (device, inode), or a shared log's name
    scanned: int = 0  # bytes counted so far (a multiple of the block, or the size last seen)
    # marks[i]: newlines in bytes [0, i * _SCAN_BLOCK)
    marks: list[int] = field(default_factory=lambda: [0])
    newlines: int = 0  # newlines in bytes [0, scanned)
    lock: threading.Lock = field(default_factory=threading.Lock)


class LineIndex:
    """Newline counts per block of each log read by line number (Livy's `from`), kept for the
    logs read lately: a log is counted once, then only what was appended since."""

    def __init__(self, capacity: int = _INDEXED_LOGS) -> None:
        self._capacity = capacity
        self._indexes: OrderedDict[str, _Index] = OrderedDict()
        self._lock = threading.Lock()

    def read_lines(
        self,
        key: str,
        log: LogReader | None,
        from_: int | None,
        size: int,
        limit: int = MAX_ANSWER_BYTES,
    ) -> LineWindow:
        """Livy's log window: lines `from_` on (default: the last `size`), at most `size` lines
        and at most `limit` bytes of them (fewer lines then; a single line longer than that is
        cut). Lines end at "\\n" (a "\\r" before it is dropped); an unfinished last line
        counts. `key` names the log for its index (a log that shrinks is counted again)."""
        if log is None:
            return LineWindow(from_ or 0, 0, [])
        index = self._index_for(key, getattr(log, "identity", key))
        with index.lock:
            total, start_of_line = self._count(index, log, log.size)
            start = max(0, total - size) if from_ is None else from_
            if start >= total or size <= 0:
                return LineWindow(start, total, [])
            offset = start_of_line(start)
        data = log.read(offset, min(limit, log.size - offset))
        return LineWindow(start, total, _split(data, size, offset + len(data) >= log.size))

    def _index_for(self, key: str, identity: object) -> _Index:
        with self._lock:
            index = self._indexes.get(key)
            if index is None or index.identity != identity:
                index = _Index(identity)
                self._indexes[key] = index
            self._indexes.move_to_end(key)
            while len(self._indexes) > self._capacity:
                self._indexes.popitem(last=False)
            return index

    @staticmethod
    def _count(index: _Index, log: LogReader, size: int) -> tuple[int, _LineFinder]:
        """Bring the index up to `size` bytes: (lines in the log, where line N starts)."""
        if size < index.scanned:  # truncated: count again
            index.scanned, index.marks, index.newlines = 0, [0], 0
        # Restart from the last whole block: the partial one is counted again as it grows.
        whole = len(index.marks) - 1
        index.scanned, index.newlines = whole * _SCAN_BLOCK, index.marks[-1]
        while index.scanned < size:
            data = log.read(index.scanned, min(_SCAN_BLOCK, size - index.scanned))
            if not data:
                break
            index.newlines += data.count(b"\n")
            index.scanned += len(data)
            if len(data) == _SCAN_BLOCK:
                index.marks.append(index.newlines)
        last_ends_line = size == 0 or log.read(size - 1, 1) == b"\n"
        total = index.newlines + (0 if last_ends_line else 1)
        return total, _LineFinder(log, list(index.marks))


class _LineFinder:
    """Where line N starts: after the N-th newline, found in the one block that holds it."""

    def __init__(self, log: LogReader, marks: list[int]) -> None:
        self._log = log
        self._marks = marks

    def __call__(self, line: int) -> int:
        if line <= 0:
            return 0
        # The block holding the line-th newline: marks[block] < line <= marks[block + 1].
        block = bisect.bisect_left(self._marks, line) - 1
        base = block * _SCAN_BLOCK
        data = self._log.read(base, _SCAN_BLOCK)
        wanted = line - self._marks[block]
        at = -1
        for _ in range(wanted):
            at = data.find(b"\n", at + 1)
            if at < 0:  # not in this block: the log changed under us
                return base + len(data)
        return base + at + 1


def _split(data: bytes, size: int, at_end: bool) -> list[str]:
    """The first `size` lines in `data` (read from a line start). A line that does not end in
    `data` is kept only when it is the last of the log, or when it is the only one (cut: it
    is longer than one answer)."""
    pieces = data.split(b"\n", size)
    if len(pieces) > size:
        del pieces[size:]  # the rest is past the window
    elif pieces[-1] == b"":
        pieces.pop()  # nothing after the last newline
    elif not at_end and len(pieces) > 1:
        pieces.pop()  # cut by the byte limit: the next window starts with it
    return [p.removesuffix(b"\r").decode("utf-8", "replace") for p in pieces]
