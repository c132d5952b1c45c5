"""Group commit: submissions that arrive together are written in one transaction.

One writer thread takes whatever arrived while the last commit ran and writes it as one batch;
each caller waits for its own result, so nothing is answered before it is durable, and the
database sees one transaction per batch, not per request.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from chidori.domain.records import Job
from chidori.domain.spec import JobSpec, fingerprint_of


@dataclass
class Submission:
    spec: JobSpec
    owner: str
    team: str | None
    idempotency_key: str | None
    source: str | None
    channel: str | None = None  # set by the server (chidori.domain.records.Channel), never the spec
    public: dict[str, Any] = field(init=False)  # the spec as stored and shown
    # Compared only to tell an idempotent retry from a different job: without a key, none.
    fingerprint: str = field(init=False)
    result: tuple[Job, bool] | None = None
    error: BaseException | None = None
    done: threading.Event | None = None  # a thread's (submit)
    waiter: asyncio.Future[None] | None = None  # an event loop's (submit_async)

    def __post_init__(self) -> None:
        self.public = self.spec.stored_dict()
        self.fingerprint = fingerprint_of(self.public) if self.idempotency_key else ""

    @property
    def owned_key(self) -> tuple[str, str] | None:
        """(owner, idempotency key): keys are one user's own, never shared between users."""
        return None if self.idempotency_key is None else (self.owner, self.idempotency_key)


def _resolve(futures: list[asyncio.Future[None]]) -> None:
    for future in futures:
        if not future.done():
            future.set_result(None)


class GroupCommitter:
    """Commits submissions in batches from one writer thread: whatever arrives while a commit
    runs goes into the next one. Each caller waits for its own result, so nothing is answered
    before it is durable, and the database sees one transaction per batch, not per request."""

    def __init__(self, write: Callable[[Sequence[Submission]], None], max_batch: int = 256) -> None:
        self._write = write
        self._max_batch = max_batch
        self._pending: queue.Queue[Submission | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="group-commit", daemon=True)
                self._thread.start()

    def submit(self, item: Submission) -> tuple[Job, bool]:
        item.done = threading.Event()
        self._start()
        self._pending.put(item)
        item.done.wait()
        return self._outcome(item)

    async def submit_async(self, item: Submission) -> tuple[Job, bool]:
        """As `submit`, without holding a thread while the batch commits."""
        item.waiter = asyncio.get_running_loop().create_future()
        self._start()
        self._pending.put(item)
        await item.waiter
        return self._outcome(item)

    @staticmethod
    def _outcome(item: Submission) -> tuple[Job, bool]:
        if item.error is not None:
            raise item.error
        assert item.result is not None
        return item.result

    def close(self) -> None:
        if self._thread is not None:
            self._pending.put(None)
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self) -> None:
        while True:
            first = self._pending.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self._max_batch:
                try:
                    item = self._pending.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._pending.put(None)
                    break
                batch.append(item)
            self._commit(batch)

    def _commit(self, batch: list[Submission]) -> None:
        try:
            self._write(batch)
        except Exception as exc:
            if len(batch) == 1:
                batch[0].error = exc
            else:
                # One bad submission must not sink the others: retry them one by one.
                for item in batch:
                    item.result = item.error = None
                    self._commit([item])
                return
        waiters: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
        for item in batch:
            if item.done is not None:
                item.done.set()
            if item.waiter is not None:
                waiters.setdefault(item.waiter.get_loop(), []).append(item.waiter)
        # One hand-over per event loop for the whole batch, not one per submission.
        for loop, futures in waiters.items():
            loop.call_soon_threadsafe(_resolve, futures)
