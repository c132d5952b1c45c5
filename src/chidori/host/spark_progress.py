"""Live Spark progress: each hosted driver's event log, tailed while it runs (docs/progress.md).

Drivers write their event log into the server's event-log folder (uncompressed, with a small
buffer: `LIVE_PROGRESS_CONF` of `chidori.backends.spark`). `SparkProgressCollector.poll` reads what
was appended since the last read, folds it into a `ProgressTracker`, and hands the summary to
`on_progress` at most every `write_interval` seconds while it changes; `finish` reads the rest
once the driver has exited and hands the final summary (`final: true`).

The log is the job's own file, so it is read as untrusted: found by the application id with
no link followed (O_NOFOLLOW, one link, a regular file), owned by the job's uid when the job
runs in a sandbox, read at most `read_limit` bytes per poll and `total_limit` in all, lines
over `line_limit` skipped, and anything that is not an event ignored by the tracker.
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chidori.domain.spark_progress import ProgressTracker

log = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int, dict[str, Any]], None]

_APP_ID = re.compile(r"[A-Za-z0-9_-]{1,200}")
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def log_name(app_id: str) -> str:
    """Spark's file-system-safe name of an application (`EventLogFileWriter`)."""
    return app_id.replace(":", "-").replace("/", "-").replace(" ", "-").lower()


class EventLogReader:
    """The complete JSON lines appended to one application's event log since the last read:
    the rolling layout (`eventlog_v2_NAME/events_N_NAME`) or a single file (`NAME.inprogress`,
    then `NAME`). Compressed logs are not read."""

    def __init__(
        self,
        folder: Path,
        app_id: str,
        owner_uid: int | None,
        read_limit: int = 1024 * 1024,
        line_limit: int = 256 * 1024,
        total_limit: int = 512 * 1024 * 1024,
    ) -> None:
        self._folder = folder
        self._name = log_name(app_id) if _APP_ID.fullmatch(app_id) else None
        self._owner = owner_uid
        self._read_limit = read_limit
        self._line_limit = line_limit
        self._total_limit = total_limit
        self._fd: int | None = None
        self._index = 0  # the rolling file being read (0: the single file)
        self._pending = b""
        self._skipping = False  # inside a line over the limit
        self.total = 0  # bytes read

    def events(self) -> Iterator[object]:
        """Decoded events of the lines completed since the last call (bounded per call)."""
        budget = min(self._read_limit, self._total_limit - self.total)
        while budget > 0 and self._name is not None:
            if self._fd is None and not self._open_next():
                return
            assert self._fd is not None
            try:
                chunk = os.read(self._fd, budget)
            except OSError:
                return
            if not chunk:
                if not self._open_next():  # a rolled file continues in the next one
                    return
                continue
            budget -= len(chunk)
            self.total += len(chunk)
            yield from self._lines(chunk)

    def _lines(self, chunk: bytes) -> Iterator[object]:
        data = self._pending + chunk
        lines = data.split(b"\n")
        self._pending = lines.pop()
        for line in lines:
            if self._skipping:
                self._skipping = False  # the end of the overlong line
                continue
            if len(line) > self._line_limit:
                continue
            try:
                yield json.loads(line)
            except (ValueError, RecursionError):
                continue
        if len(self._pending) > self._line_limit:
            self._pending, self._skipping = b"", True

    def _open_next(self) -> bool:
        """Open the first file, or the next rolled one when it exists; True if one is open."""
        assert self._name is not None
        rolling = f"eventlog_v2_{self._name}"
        if self._index == 0 and self._fd is None:
            for name in (f"{self._name}.inprogress", self._name):
                fd = self._open_file(None, name)
                if fd is not None:
                    self._fd, self._index = fd, -1  # -1: a single file, nothing follows
                    return True
        if self._index < 0:
            return False
        fd = self._open_file(rolling, f"events_{self._index + 1}_{self._name}")
        if fd is None:
            return False
        if self._fd is not None:
            os.close(self._fd)
        self._fd, self._index = fd, self._index + 1
        self._pending, self._skipping = b"", False
        return True

    def _open_file(self, subfolder: str | None, name: str) -> int | None:
        try:
            folder = os.open(self._folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            if subfolder is not None:
                inner = os.open(subfolder, _DIR_FLAGS, dir_fd=folder)
                os.close(folder)
                folder = inner
                if not self._owned(os.fstat(folder)):
                    return None
            fd = os.open(name, _OPEN_FLAGS, dir_fd=folder)
        except OSError:
            return None
        finally:
            os.close(folder)
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1 or not self._owned(info):
            os.close(fd)
            return None
        return fd

    def _owned(self, info: os.stat_result) -> bool:
        return self._owner is None or info.st_uid == self._owner

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


@dataclass
class _Tracked:
    reader: EventLogReader
    tracker: ProgressTracker
    lock: threading.Lock = field(default_factory=threading.Lock)
    read_at: float | None = None
    written_at: float | None = None
    changed: bool = False


def summary(tracker: ProgressTracker, final: bool) -> dict[str, Any]:
    """The progress record the store keeps: the contract's counts plus `stages`."""
    return {
        "updated_at": datetime.now(UTC).isoformat(),
        "final": final,
        **tracker.counts(),
        "stages": tracker.stages(),
    }


class SparkProgressCollector:
    """Per hosted driver, its event log read into a progress summary handed to `on_progress`
    (at most every `write_interval` seconds while it changes, and once at the end)."""

    def __init__(
        self,
        event_log_dir: Path,
        on_progress: ProgressCallback,
        read_interval: float = 0.5,
        write_interval: float = 2.0,
    ) -> None:
        self._folder = event_log_dir
        self._on_progress = on_progress
        self._read_interval = read_interval
        self._write_interval = write_interval
        self._tracked: dict[tuple[int, int], _Tracked] = {}
        self._lock = threading.Lock()

    def poll(
        self, job_id: int, attempt: int, app_id: str, owner_uid: int | None, since_ms: int
    ) -> None:
        """Read what the driver's event log gained; hand the summary on when it is due.
        `owner_uid`: the uid the log must belong to (None: not checked, no sandbox);
        `since_ms`: jobs submitted before (a warm driver's warm-up) are not counted."""
        key = (job_id, attempt)
        with self._lock:
            tracked = self._tracked.get(key)
            if tracked is None:
                reader = EventLogReader(self._folder, app_id, owner_uid)
                tracked = self._tracked[key] = _Tracked(reader, ProgressTracker(since_ms))
        now = time.monotonic()
        with tracked.lock:
            if tracked.read_at is not None and now - tracked.read_at < self._read_interval:
                return
            tracked.read_at = now
            tracked.changed |= self._read(tracked)[0]
            due = tracked.written_at is None or now - tracked.written_at >= self._write_interval
            if tracked.changed and due:
                tracked.written_at, tracked.changed = now, False
                self._hand_on(job_id, attempt, summary(tracked.tracker, final=False))

    def finish(self, job_id: int, attempt: int) -> None:
        """The driver has exited: read the rest and hand on the final summary (nothing when
        no event was ever read)."""
        with self._lock:
            tracked = self._tracked.pop((job_id, attempt), None)
        if tracked is None:
            return
        with tracked.lock:
            while self._read(tracked)[1]:  # the rest, a read limit at a time
                pass
            tracked.reader.close()
            if tracked.tracker.events:
                self._hand_on(job_id, attempt, summary(tracked.tracker, final=True))

    def tracking(self) -> list[tuple[int, int]]:
        with self._lock:
            return list(self._tracked)

    @staticmethod
    def _read(tracked: _Tracked) -> tuple[bool, bool]:
        """(whether the summary changed, whether anything was read)."""
        changed = False
        before = tracked.reader.total
        for event in tracked.reader.events():
            changed |= tracked.tracker.feed(event)
        return changed, tracked.reader.total > before

    def _hand_on(self, job_id: int, attempt: int, record: dict[str, Any]) -> None:
        try:
            self._on_progress(job_id, attempt, record)
        except Exception:
            log.exception("recording the Spark progress of job %s attempt %s", job_id, attempt)
