"""The outbox: messages written with their job, relayed to the queue after the commit."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import func, select

from chidori.queues.base import Delivery, DispatchQueue, Message, QueueUnavailable
from chidori.queues.db import DatabaseQueue
from chidori.queues.outbox import OutboxRelay, write_outbox
from chidori.store import Database
from chidori.store.models import OutboxRow
from tests.test_queue_contract import (
    delete_rabbitmq_queue,
    rabbitmq_url_or_skip,
    unique_queue_name,
)


@pytest.fixture(params=["db", "rabbitmq"])
def target(request: pytest.FixtureRequest, store: Database) -> Iterator[DispatchQueue]:
    """The queue the relay publishes to."""
    if request.param == "db":
        yield DatabaseQueue(store)
        return
    from chidori.queues.rabbitmq import RabbitMQQueue

    url = rabbitmq_url_or_skip()
    name = unique_queue_name()
    queue = RabbitMQQueue(url, queue_name=name)
    yield queue
    queue.close()
    delete_rabbitmq_queue(url, name)


class RecordingQueue(DispatchQueue):
    """Accepts `accept` messages (all by default), then fails like a broker gone away."""

    def __init__(self, accept: int | None = None, delay: float = 0.0) -> None:
        self.accepted: list[int] = []
        self.attempts = 0
        self._accept = accept
        self._delay = delay
        self._lock = threading.Lock()

    def put(self, message: Message) -> None:
        time.sleep(self._delay)
        with self._lock:
            self.attempts += 1
            if self._accept is not None and len(self.accepted) >= self._accept:
                raise QueueUnavailable("broker down (test double)")
            self.accepted.append(message.job_id)

    def claim(self, timeout: float) -> Delivery | None:
        raise NotImplementedError

    def ack(self, delivery: Delivery) -> None:
        raise NotImplementedError

    def nack(self, delivery: Delivery, requeue: bool = True) -> None:
        raise NotImplementedError

    def depth(self) -> int:
        return 0


def _write(store: Database, job_ids: range | list[int]) -> None:
    with store.writing() as session:
        for job_id in job_ids:
            write_outbox(session, [Message(job_id=job_id, queue="etl")], store.now())


def _outbox_size(store: Database) -> int:
    with store.reading() as session:
        return int(session.scalar(select(func.count()).select_from(OutboxRow)) or 0)


def _drain(queue: DispatchQueue) -> list[int]:
    seen = []
    while (delivery := queue.claim(0.5)) is not None:
        assert delivery.message.queue == "etl"
        seen.append(delivery.message.job_id)
        queue.ack(delivery)
    return seen


def test_relay_delivers_every_committed_row_and_removes_it(
    store: Database, target: DispatchQueue
) -> None:
    _write(store, range(1, 4))
    _write(store, range(4, 6))
    assert OutboxRelay(store, target).relay_once() == 5
    assert _outbox_size(store) == 0
    assert _drain(target) == [1, 2, 3, 4, 5]
    assert OutboxRelay(store, target).relay_once() == 0


def test_failing_queue_keeps_the_rows_and_a_later_relay_delivers_each_once_in_order(
    store: Database, target: DispatchQueue
) -> None:
    _write(store, range(1, 6))
    down = RecordingQueue(accept=0)
    assert OutboxRelay(store, down).relay_once() == 0
    assert _outbox_size(store) == 5
    flaky = RecordingQueue(accept=2)  # the broker goes away after two messages
    assert OutboxRelay(store, flaky).relay_once() == 2
    assert _outbox_size(store) == 3
    assert OutboxRelay(store, target).relay_once() == 3
    assert _outbox_size(store) == 0
    assert flaky.accepted + _drain(target) == [1, 2, 3, 4, 5]


def test_a_rolled_back_transaction_publishes_nothing(
    store: Database, target: DispatchQueue
) -> None:
    def create_job_that_fails() -> None:
        with store.writing() as session:
            write_outbox(session, [Message(job_id=1, queue="etl")], store.now())
            raise RuntimeError("the job could not be created")

    with pytest.raises(RuntimeError):
        create_job_that_fails()
    assert _outbox_size(store) == 0
    assert OutboxRelay(store, target).relay_once() == 0
    assert _drain(target) == []


def test_one_pass_publishes_at_most_a_batch(store: Database) -> None:
    _write(store, range(1, 8))
    queue = RecordingQueue()
    relay = OutboxRelay(store, queue, batch=3)
    assert [relay.relay_once() for _ in range(4)] == [3, 3, 1, 0]
    assert queue.accepted == list(range(1, 8))


def test_two_relays_at_once_lose_nothing(store: Database) -> None:
    """Both relays drain one outbox together. On PostgreSQL (row locks) no row is published
    twice; on SQLite a duplicate is allowed (consumers re-check the store) but no loss."""
    total = 40
    _write(store, range(total))
    queue = RecordingQueue(delay=0.002)
    relays = [OutboxRelay(store, queue, batch=5) for _ in range(2)]
    errors: list[BaseException] = []

    def drain(relay: OutboxRelay) -> None:
        try:
            deadline = time.monotonic() + 30
            while _outbox_size(store) and time.monotonic() < deadline:
                relay.relay_once()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=drain, args=(relay,)) for relay in relays]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert _outbox_size(store) == 0
    assert set(queue.accepted) == set(range(total))
    if store.dialect == "postgresql":
        assert sorted(queue.accepted) == list(range(total))


def _until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_run_relays_when_woken_and_stops_when_told(store: Database) -> None:
    queue = RecordingQueue()
    stop, wake = threading.Event(), threading.Event()
    thread = threading.Thread(target=OutboxRelay(store, queue).run, args=(stop, wake))
    thread.start()
    try:
        time.sleep(0.1)  # the first pass finds nothing; the relay now waits for up to 1 s
        _write(store, [1, 2])
        started = time.monotonic()
        wake.set()
        assert _until(lambda: queue.accepted == [1, 2])
        assert time.monotonic() - started < 0.9  # the wake, not the 1 s timer
        _write(store, [3])  # nobody wakes it: the periodic pass picks it up
        assert _until(lambda: queue.accepted == [1, 2, 3], timeout=3)
    finally:
        stop.set()
        wake.set()
        thread.join(5)
    assert not thread.is_alive()


def test_run_backs_off_while_the_queue_fails(store: Database) -> None:
    _write(store, [1])
    queue = RecordingQueue(accept=0)
    stop, wake = threading.Event(), threading.Event()
    thread = threading.Thread(target=OutboxRelay(store, queue).run, args=(stop, wake))
    thread.start()
    time.sleep(1.7)  # tries at 0, 0.5 and 1.5 s
    for _ in range(10):
        wake.set()  # waking does not cut a back-off short
        time.sleep(0.01)
    stop.set()
    thread.join(5)
    assert not thread.is_alive()
    assert 2 <= queue.attempts <= 4
    assert _outbox_size(store) == 1
