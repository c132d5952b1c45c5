"""Driver logs in shared storage, so every replica serves them, during the run and after the
host is gone.

The replica hosting a driver copies what its log gained since the last copy into shared
storage every `interval` seconds, as segments (`logs/<job>/<attempt>/<offset>`, at most
`SEGMENT_BYTES` each), and the rest when the attempt ends, then an end marker. Another
replica reads a log by listing its segments; a follow from another replica trails the host
by about `interval`. Segments are written whole and never changed, so a reader never sees a
torn one, and a host killed mid-run leaves every segment it copied.

Why copies instead of forwarding reads to the host: the log then outlives its host (the
very case HA is for), and reading needs no replica-to-replica calls or addresses.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from chidori.storage.blobs import BlobStore

log = logging.getLogger(__name__)

SEGMENT_BYTES = 4 * 1024 * 1024
_END = "end"


def log_prefix(job_id: int, attempt: int) -> str:
    return f"logs/{job_id}/{attempt}/"


def segment_key(job_id: int, attempt: int, offset: int) -> str:
    return f"{log_prefix(job_id, attempt)}{offset:016d}"


@dataclass
class _Tracked:
    path: Path
    shipped: int = 0  # bytes of the file already in shared storage


class LogShipper:
    """Copies the logs of the drivers this replica hosts into shared storage."""

    def __init__(self, blobs: BlobStore, interval: float = 1.0) -> None:
        self._blobs = blobs
        self._interval = interval
        self._tracked: dict[tuple[int, int], _Tracked] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="log-shipper", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def track(self, job_id: int, attempt: int, path: Path) -> None:
        """Start copying the log of a driver this replica now hosts."""
        with self._lock:
            self._tracked.setdefault((job_id, attempt), _Tracked(path))

    def resume(self, job_id: int, attempt: int, path: Path) -> None:
        """Go on copying a log another replica was copying (an adopted remote run): `path`
        is written again from its start, alike, so only what lies past the copies already in
        shared storage is copied."""
        shipped = SharedLog(self._blobs, job_id, attempt).size
        with self._lock:
            self._tracked[(job_id, attempt)] = _Tracked(path, shipped)

    def finish(self, job_id: int, attempt: int, path: Path | None = None) -> None:
        """The attempt ended: copy the rest of its log and mark it complete."""
        with self._lock:
            tracked = self._tracked.pop((job_id, attempt), None)
        if tracked is None and path is None:
            return
        tracked = tracked or _Tracked(path)  # type: ignore[arg-type]
        try:
            self._ship(job_id, attempt, tracked)
            self._blobs.put_bytes(log_prefix(job_id, attempt) + _END, b"")
        except Exception:
            log.exception("archiving the log of job %s attempt %s failed", job_id, attempt)

    def ship_now(self) -> None:
        """One round of copies (the thread runs these every `interval`)."""
        with self._lock:
            items = list(self._tracked.items())
        for (job_id, attempt), tracked in items:
            try:
                self._ship(job_id, attempt, tracked)
            except Exception:
                log.exception("copying the log of job %s attempt %s failed", job_id, attempt)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.ship_now()

    def _ship(self, job_id: int, attempt: int, tracked: _Tracked) -> None:
        try:
            size = os.stat(tracked.path).st_size
        except FileNotFoundError:
            return
        if size <= tracked.shipped:
            return
        with open(tracked.path, "rb") as handle:
            handle.seek(tracked.shipped)
            while tracked.shipped < size:
                data = handle.read(min(SEGMENT_BYTES, size - tracked.shipped))
                if not data:
                    break
                self._blobs.put_bytes(segment_key(job_id, attempt, tracked.shipped), data)
                tracked.shipped += len(data)


@dataclass(frozen=True)
class _Segment:
    key: str
    offset: int
    size: int


class SharedLog:
    """A log as another replica sees it: the segments its host copied so far."""

    preferred_chunk = SEGMENT_BYTES  # reads aligned to whole segments cost one request each

    def __init__(self, blobs: BlobStore, job_id: int, attempt: int) -> None:
        self._blobs = blobs
        self._segments: list[_Segment] = []
        self.complete = False
        for info in blobs.list(log_prefix(job_id, attempt)):
            name = info.key.rsplit("/", 1)[1]
            if name == _END:
                self.complete = True
            elif name.isdigit():
                self._segments.append(_Segment(info.key, int(name), info.size))
        self._segments.sort(key=lambda s: s.offset)
        # Only the run of segments that follow each other counts: a gap is a copy in flight.
        end = 0
        contiguous = []
        for segment in self._segments:
            if segment.offset != end:
                break
            contiguous.append(segment)
            end += segment.size
        self._segments = contiguous
        self.size = end

    @property
    def exists(self) -> bool:
        return bool(self._segments) or self.complete

    def read(self, start: int, length: int) -> bytes:
        """Bytes `start`..`start + length` (fewer at the end)."""
        wanted_end = min(self.size, start + length)
        pieces = []
        for segment in self._segments:
            seg_end = segment.offset + segment.size
            if seg_end <= start or segment.offset >= wanted_end:
                continue
            lo = max(start, segment.offset) - segment.offset
            hi = min(wanted_end, seg_end) - segment.offset
            pieces.append(self._blobs.read(segment.key, lo, hi - lo))
        return b"".join(pieces)

    def delete(self) -> None:
        for segment in self._segments:
            self._blobs.delete(segment.key)


EVENT_LOG_PREFIX = "eventlogs/"


class EventLogSync:
    """Spark event logs through shared storage, for one History Server over every replica:
    each replica copies the finished event logs in its folder up (`up`), and `chidori
    history-server` copies them all down into the folder it reads (`down`), every
    `interval` seconds. A log still being written (`.inprogress`) waits for its end."""

    def __init__(self, blobs: BlobStore, folder: Path, up: bool, interval: float = 5.0) -> None:
        self._blobs = blobs
        self._folder = folder
        self._up = up
        self._interval = interval
        self._seen: dict[str, tuple[int, float]] = {}  # name -> (size, mtime) copied
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        name = "event-log-upload" if self._up else "event-log-download"
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._up:
            self.sync()  # what ended just before the stop

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.sync()

    def sync(self) -> int:
        """One round; returns the number of logs copied."""
        try:
            return self.upload() if self._up else self.download()
        except Exception:
            log.exception("event log sync failed")
            return 0

    def upload(self) -> int:
        copied = 0
        try:
            entries = list(os.scandir(self._folder))
        except FileNotFoundError:
            return 0
        for entry in entries:
            if not entry.is_file(follow_symlinks=False) or entry.name.endswith(".inprogress"):
                continue
            stat = entry.stat(follow_symlinks=False)
            mark = (stat.st_size, stat.st_mtime)
            if self._seen.get(entry.name) == mark:
                continue
            key = EVENT_LOG_PREFIX + entry.name
            if self._blobs.size(key) != stat.st_size:
                self._blobs.put_file(key, Path(entry.path))
                copied += 1
            self._seen[entry.name] = mark
        return copied

    def download(self) -> int:
        copied = 0
        self._folder.mkdir(parents=True, exist_ok=True)
        for info in self._blobs.list(EVENT_LOG_PREFIX):
            name = info.key.removeprefix(EVENT_LOG_PREFIX)
            if "/" in name:
                continue
            target = self._folder / name
            try:
                if target.stat().st_size == info.size:
                    continue
            except FileNotFoundError:
                pass
            self._blobs.fetch(info.key, target)
            copied += 1
        return copied
