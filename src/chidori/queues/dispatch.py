"""The dispatch channel: a message is written with the jobs it announces, carried by the
queue (`CHIDORI_QUEUE_URL`), and wakes a scheduler wherever it is consumed. Each commit of
submissions writes one message per job queue it touched (naming that queue's newest job of
the commit), not one per job: a message only says "look at the store".

- `db` on SQLite: only one server can use the file, so the in-process signal the store sends
  after each commit is the whole channel; no message rows are written.
- `db` on PostgreSQL: the message row is inserted in the jobs' own transaction
  (`queue_messages`, claimed with SKIP LOCKED by every replica).
- an external broker (RabbitMQ): the message goes to the `outbox` table in the jobs'
  transaction, and a relay publishes it (with publisher confirms) and then deletes it; a
  broker outage delays messages, never loses them.
Consumers only wake their scheduler: admission always re-reads the store, so a message lost
or delivered twice costs latency, never a job.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

from sqlalchemy.orm import Session

from chidori.queues.base import DispatchQueue, Message, QueueUnavailable
from chidori.queues.db import enqueue_in_session
from chidori.queues.factory import open_queue
from chidori.queues.outbox import OutboxRelay, write_outbox
from chidori.store import Database, JobRepository
from chidori.store.jobs import DispatchWriter

log = logging.getLogger(__name__)


def _is_db(url: str) -> bool:
    return url.strip().lower() in ("", "db")


MessageWriter = Callable[[Session, Sequence[Message], datetime], None]


def _per_queue(write: MessageWriter) -> DispatchWriter:
    """The store names each job queue's newest job of a commit; a writer takes messages."""

    def write_newest(session: Session, newest: Mapping[str, int], now: datetime) -> None:
        write(session, [Message(job_id, queue) for queue, job_id in newest.items()], now)

    return write_newest


def queue_kind(url: str) -> str:
    """`db`, `rabbitmq`, `pubsub` or `azure`: the metrics' label for a queue URL (never the
    URL itself, which may hold a password)."""
    scheme, separator, _rest = url.strip().partition("://")
    scheme = scheme.lower() if separator else url.strip().lower()
    kinds = {"": "db", "db": "db", "amqp": "rabbitmq", "amqps": "rabbitmq"}
    return kinds.get(scheme, scheme if scheme in ("pubsub", "azure") else "other")


class Dispatcher:
    def __init__(
        self,
        store: Database,
        jobs: JobRepository,
        url: str,
        wake: Callable[[], None],
        on_error: Callable[[str], None] = lambda _kind: None,
    ) -> None:
        """`on_error(kind)` is told of each failure to reach the queue (for the metrics)."""
        self.kind = queue_kind(url)
        self._on_error = on_error
        self._store = store
        self._wake = wake
        self._stop = threading.Event()
        self._relay_wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._healthy = True
        self._problem = ""
        self._consumer: DispatchQueue | None = None
        self._relay: OutboxRelay | None = None
        if _is_db(url):
            if store.dialect != "sqlite":
                jobs.set_dispatch_writer(_per_queue(enqueue_in_session))
                self._consumer = open_queue(url, store)
        else:
            jobs.set_dispatch_writer(_per_queue(write_outbox))
            self._consumer = open_queue(url, store)
            self._relay = OutboxRelay(store, open_queue(url, store))
            store.subscribe(lambda _job_id: self._relay_wake.set(), scheduling_only=True)

    def start(self) -> None:
        if self._consumer is not None:
            self._threads.append(
                threading.Thread(target=self._consume, name="dispatch-consumer", daemon=True)
            )
        if self._relay is not None:
            self._threads.append(
                threading.Thread(
                    target=self._relay.run,
                    args=(self._stop, self._relay_wake),
                    name="outbox-relay",
                    daemon=True,
                )
            )
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._relay_wake.set()
        for thread in self._threads:
            thread.join(timeout=5)
        if self._consumer is not None:
            self._consumer.close()

    def check(self) -> None:
        """Raise QueueUnavailable while the broker cannot be reached (for /readyz)."""
        if not self._healthy:
            raise QueueUnavailable(f"dispatch queue unavailable: {self._problem}")

    def _consume(self) -> None:
        assert self._consumer is not None
        backoff = 0.5
        while not self._stop.is_set():
            try:
                # Every message only says "look at the store": one wake-up covers a batch.
                deliveries = self._consumer.claim_batch(256, timeout=1.0)
                if deliveries:
                    self._wake()
                    self._consumer.ack_batch(deliveries)
                self._healthy, backoff = True, 0.5
            except QueueUnavailable as exc:
                self._on_error(self.kind)
                if self._healthy:
                    log.warning("dispatch queue unavailable, retrying: %s", exc.message)
                self._healthy, self._problem = False, exc.message
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
            except Exception:
                log.exception("dispatch consumer failed")
                self._stop.wait(1.0)
