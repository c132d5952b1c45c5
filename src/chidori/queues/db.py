"""The in-database dispatch queue (`CHIDORI_QUEUE_URL=db`, the default): no extra service.

Messages are rows of `queue_messages`. Claiming a row hides it for `visibility_timeout`
seconds (`available_at` moves into the future) instead of deleting it, so a consumer that dies
without acking lets the message come back on its own once the timeout passes. On PostgreSQL
the claim locks the row with `FOR UPDATE SKIP LOCKED`, so consumers on several replicas never
wait for each other nor take the same row; on SQLite the write transaction (`BEGIN IMMEDIATE`)
already serializes them.

Because the queue lives in the store, `enqueue_in_session` lets a job and its dispatch message
commit in one transaction: no outbox is needed with this queue.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Table, bindparam, delete, func, insert, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql import Select, Update

from chidori.domain.errors import StoreUnavailable
from chidori.queues.base import Delivery, DispatchQueue, Message, QueueUnavailable
from chidori.store import Database
from chidori.store.models import QueueMessageRow

POLL_INTERVAL = 0.025  # seconds between looks at an empty queue while `claim` waits
# The statements run for every batch, built once (see chidori.store.statements).
_MESSAGES = cast(Table, QueueMessageRow.__table__)
_INSERT_MESSAGES = insert(_MESSAGES)
_ANY_AVAILABLE = (
    select(_MESSAGES.c.id).where(_MESSAGES.c.available_at <= bindparam("b_now")).limit(1)
)
_OLDEST = (
    select(_MESSAGES.c.id)
    .where(_MESSAGES.c.available_at <= bindparam("b_now"))
    .order_by(_MESSAGES.c.id)
    .limit(bindparam("b_max"))
)


def _take_statement(oldest: Select[tuple[int]]) -> Update:
    return (
        update(_MESSAGES)
        .where(_MESSAGES.c.id.in_(oldest.scalar_subquery()))
        .values(
            available_at=bindparam("b_hidden_until"),
            deliveries=_MESSAGES.c.deliveries + 1,
        )
        .returning(_MESSAGES.c.id, _MESSAGES.c.job_id, _MESSAGES.c.queue, _MESSAGES.c.deliveries)
    )


_TAKE = _take_statement(_OLDEST)
# Rows other consumers hold are skipped, not waited for (PostgreSQL).
_TAKE_SKIP_LOCKED = _take_statement(_OLDEST.with_for_update(skip_locked=True))
_ACK = delete(_MESSAGES).where(_MESSAGES.c.id.in_(bindparam("b_ids", expanding=True)))


@dataclass(frozen=True)
class _Receipt:
    row_id: int
    deliveries: int  # which delivery of the row this is: a stale one cannot requeue a newer


def enqueue_in_session(session: Session, messages: Sequence[Message], now: datetime) -> None:
    """Add `messages` to the queue inside the caller's transaction (they are visible once that
    transaction commits, and never if it rolls back). One statement for them all."""
    if messages:
        session.connection().execute(
            _INSERT_MESSAGES,
            [
                {
                    "job_id": m.job_id,
                    "queue": m.queue,
                    "available_at": now,
                    "deliveries": 0,
                    "created_at": now,
                }
                for m in messages
            ],
        )


@contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except StoreUnavailable as exc:
        raise QueueUnavailable(f"dispatch queue unavailable: {exc.message}") from exc


class DatabaseQueue(DispatchQueue):
    """A dispatch queue on the store's `queue_messages` table; safe to share between threads
    and to use from several processes or replicas over the same database."""

    def __init__(self, store: Database, visibility_timeout: float = 30.0) -> None:
        if visibility_timeout <= 0:
            raise ValueError("visibility_timeout must be positive")
        self._store = store
        self._visibility = timedelta(seconds=visibility_timeout)

    def put(self, message: Message) -> None:
        with _translated(), self._store.writing() as session:
            enqueue_in_session(session, [message], self._store.now())

    def claim(self, timeout: float) -> Delivery | None:
        found = self.claim_batch(1, timeout)
        return found[0] if found else None

    def claim_batch(self, max_messages: int, timeout: float) -> list[Delivery]:
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            # A plain read first: on SQLite it takes no write lock, so idle consumers polling
            # an empty queue do not hold up writers.
            if self._any_available():
                deliveries = self._take(max_messages)
                if deliveries:
                    return deliveries
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            time.sleep(min(POLL_INTERVAL, remaining))

    def ack_batch(self, deliveries: list[Delivery]) -> None:
        """Delete the messages, in one statement."""
        ids = [_receipt(d).row_id for d in deliveries]
        if ids:
            with _translated(), self._store.connecting() as conn:
                conn.execute(_ACK, {"b_ids": ids})

    def _any_available(self) -> bool:
        with _translated(), self._store.reading() as session:
            found = session.connection().execute(_ANY_AVAILABLE, {"b_now": self._store.now()})
            return found.first() is not None

    def _take(self, max_messages: int) -> list[Delivery]:
        """Hide up to `max_messages` available messages for the visibility timeout and return
        them: one UPDATE ... RETURNING."""
        take = _TAKE_SKIP_LOCKED if self._store.dialect == "postgresql" else _TAKE
        with _translated(), self._store.connecting() as conn:
            now = self._store.now()
            rows = conn.execute(
                take,
                {"b_now": now, "b_max": max_messages, "b_hidden_until": now + self._visibility},
            ).all()
            return [
                Delivery(
                    message=Message(job_id=job_id, queue=queue),
                    receipt=_Receipt(row_id=row_id, deliveries=deliveries),
                )
                for row_id, job_id, queue, deliveries in sorted(rows)
            ]

    def ack(self, delivery: Delivery) -> None:
        """Delete the message. Acking twice, or after the message was redelivered to another
        consumer, is harmless: the message was handled, so it is gone for everyone."""
        receipt = _receipt(delivery)
        with _translated(), self._store.writing() as session:
            session.execute(delete(QueueMessageRow).where(QueueMessageRow.id == receipt.row_id))

    def nack(self, delivery: Delivery, requeue: bool = True) -> None:
        """Make the message available again at once (requeue) or delete it. A stale delivery
        (its visibility timeout passed and someone else claimed the message since) changes
        nothing: the newer claim owns the message."""
        receipt = _receipt(delivery)
        same_delivery = (
            QueueMessageRow.id == receipt.row_id,
            QueueMessageRow.deliveries == receipt.deliveries,
        )
        with _translated(), self._store.writing() as session:
            if requeue:
                session.execute(
                    update(QueueMessageRow)
                    .where(*same_delivery)
                    .values(available_at=self._store.now())
                )
            else:
                session.execute(delete(QueueMessageRow).where(*same_delivery))

    def depth(self) -> int:
        """Messages available now; claimed ones (still hidden) are not counted."""
        with _translated(), self._store.reading() as session:
            count = session.scalar(
                select(func.count())
                .select_from(QueueMessageRow)
                .where(QueueMessageRow.available_at <= self._store.now())
            )
            return int(count or 0)


def _receipt(delivery: Delivery) -> _Receipt:
    if not isinstance(delivery.receipt, _Receipt):
        raise TypeError("this delivery was not claimed from a DatabaseQueue")
    return delivery.receipt
