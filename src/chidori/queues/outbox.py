"""The transactional outbox: dispatch messages for an external broker, written with their job.

A service that creates a job calls `write_outbox` in the same transaction, so the message
exists if and only if the job does. `OutboxRelay` then publishes the rows to the broker and
deletes each one only after the broker confirmed it (`DispatchQueue.put` returned).

Delivery is at least once. A crash (or a failed commit) between a confirmed `put` and the
delete publishes that message again later; consumers tolerate that because a message is only a
hint: they re-read the job from the store, and admitting it is a compare-and-set there.

Several relays may run at once (one per replica). On PostgreSQL a relay locks the rows it
publishes (`FOR UPDATE SKIP LOCKED`) and deletes them in that same transaction, so relays never
publish the same row twice. On SQLite the relay reads the rows, publishes them and deletes them
in a second, short transaction, so it never holds the database's single write lock while it
waits for the broker; two relays on one SQLite file may then publish a row twice (harmless, as
above).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Row, Table, bindparam, delete, insert, select
from sqlalchemy.orm import Session

from chidori.domain.errors import StoreUnavailable
from chidori.queues.base import DispatchQueue, Message, QueueUnavailable
from chidori.store import Database
from chidori.store.models import OutboxRow

log = logging.getLogger(__name__)

IDLE_INTERVAL = 1.0  # relay at least this often even when nobody wakes the relay
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 10.0
_OUTBOX = cast(Table, OutboxRow.__table__)
_INSERT_OUTBOX = insert(_OUTBOX)
# Built once: the relay runs these after every commit of submissions.
_OLDEST = (
    select(_OUTBOX.c.id, _OUTBOX.c.job_id, _OUTBOX.c.queue)
    .order_by(_OUTBOX.c.id)
    .limit(bindparam("b_batch"))
)
_OLDEST_UNLOCKED = _OLDEST.with_for_update(skip_locked=True)
_DELETE = delete(_OUTBOX).where(_OUTBOX.c.id.in_(bindparam("b_ids", expanding=True)))


def write_outbox(session: Session, messages: Sequence[Message], now: datetime) -> None:
    """Add `messages` to the outbox inside the caller's transaction (one statement)."""
    if messages:
        session.connection().execute(
            _INSERT_OUTBOX,
            [{"job_id": m.job_id, "queue": m.queue, "created_at": now} for m in messages],
        )


class OutboxRelay:
    """Publishes outbox rows to `queue`, oldest first."""

    def __init__(self, store: Database, queue: DispatchQueue, batch: int = 100) -> None:
        if batch < 1:
            raise ValueError("batch must be at least 1")
        self._store = store
        self._queue = queue
        self._batch = batch

    def relay_once(self) -> int:
        """Publish up to `batch` rows in id order and delete them; returns how many were
        published. Stops at the first QueueUnavailable and leaves that row and the later ones
        for the next call. Raises StoreUnavailable."""
        published, _failed = self._relay()
        return published

    def _relay(self) -> tuple[int, bool]:
        """(rows published, whether the queue failed)."""
        if self._store.dialect == "postgresql":
            return self._relay_locked()
        return self._relay_then_delete()

    def _relay_locked(self) -> tuple[int, bool]:
        with self._store.connecting() as conn:
            rows = conn.execute(_OLDEST_UNLOCKED, {"b_batch": self._batch}).all()
            done, failed = self._publish(rows)
            if done:
                conn.execute(_DELETE, {"b_ids": done})
        return len(done), failed

    def _relay_then_delete(self) -> tuple[int, bool]:
        with self._store.reading() as session:
            rows = session.connection().execute(_OLDEST, {"b_batch": self._batch}).all()
        done, failed = self._publish(rows)
        if done:
            with self._store.connecting() as conn:
                conn.execute(_DELETE, {"b_ids": done})
        return len(done), failed

    def _publish(self, rows: Sequence[Row[Any, Any, Any]]) -> tuple[list[int], bool]:
        done: list[int] = []
        for row in rows:
            try:
                self._queue.put(Message(job_id=row.job_id, queue=row.queue))
            except QueueUnavailable as exc:
                log.warning("outbox relay paused: %s", exc.message)
                return done, True
            done.append(row.id)
        return done, False

    def run(self, stop: threading.Event, wake: threading.Event) -> None:
        """Relay until `stop` is set: whenever `wake` is set (e.g. after a job was created)
        and at least every second. After a failure (broker or database unavailable) wait
        0.5 s, doubling up to 10 s, while successes reset the wait. To end at once, set
        `stop` and then `wake`; otherwise it ends within a second."""
        backoff = FIRST_BACKOFF
        while not stop.is_set():
            wake.clear()  # a wake arriving while we relay triggers another pass
            try:
                published, failed = self._relay()
            except StoreUnavailable as exc:
                log.warning("outbox relay paused: %s", exc.message)
                published, failed = 0, True
            except Exception:
                log.exception("outbox relay failed")
                published, failed = 0, True
            if failed:
                stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            backoff = FIRST_BACKOFF
            if published < self._batch:  # a full batch means more rows may be waiting
                wake.wait(IDLE_INTERVAL)
