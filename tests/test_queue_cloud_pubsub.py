"""Pub/Sub queue behaviour beyond the shared contract (tests/test_queue_contract.py): choosing it
from CHIDORI_QUEUE_URL, outages, malformed messages, and the resources it creates. All through
the official client against the local fake (tests/fakes/pubsub_server.py), not the service.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chidori.config import ConfigError
from chidori.queues.base import Message, QueueUnavailable
from chidori.queues.factory import open_queue
from chidori.store import Database, open_database

pytest.importorskip("google.cloud.pubsub_v1", reason="the pubsub extra is not installed")

from chidori.queues.pubsub import PubSubQueue
from tests.fakes.pubsub_server import FakePubSubServer

PROJECT = "chidori-test"


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakePubSubServer]:
    server = FakePubSubServer()
    server.start()
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", server.host)
    yield server
    server.stop()


@pytest.fixture
def topic() -> str:
    return f"chidori-test-{secrets.token_hex(6)}"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Database]:
    store = open_database(f"sqlite:///{tmp_path / 'chidori.db'}")
    yield store
    store.dispose()


# ---- CHIDORI_QUEUE_URL ------------------------------------------------------------------------


def test_open_queue_gives_pubsub_with_the_default_subscription(store: Database) -> None:
    queue = open_queue("pubsub://my-project/dispatch", store)  # connects lazily
    assert isinstance(queue, PubSubQueue)
    assert queue.topic_path == "projects/my-project/topics/dispatch"
    assert queue.subscription_path == "projects/my-project/subscriptions/dispatch-chidori"
    queue.close()


def test_open_queue_takes_the_subscription_from_the_url(store: Database) -> None:
    queue = open_queue("pubsub://my-project/dispatch?subscription=workers", store)
    assert isinstance(queue, PubSubQueue)
    assert queue.subscription_path == "projects/my-project/subscriptions/workers"
    queue.close()


@pytest.mark.parametrize(
    "url",
    ["pubsub://project", "pubsub:///topic", "pubsub://p/a/b", "pubsub://p/t?queue=x"],
)
def test_open_queue_rejects_malformed_pubsub_urls(store: Database, url: str) -> None:
    with pytest.raises(ConfigError, match=r"pubsub://PROJECT/TOPIC"):
        open_queue(url, store)


# ---- behaviour ----------------------------------------------------------------------------


def test_a_publisher_alone_creates_the_subscription_so_early_messages_are_kept(
    fake: FakePubSubServer, topic: str
) -> None:
    publisher = PubSubQueue(PROJECT, topic)
    publisher.put(Message(job_id=1, queue="q"))  # before any consumer exists
    publisher.close()
    consumer = PubSubQueue(PROJECT, topic)
    try:
        delivery = consumer.claim(5)
        assert delivery is not None
        assert delivery.message == Message(job_id=1, queue="q")
        consumer.ack(delivery)
    finally:
        consumer.close()


def test_without_create_a_missing_subscription_raises_queue_unavailable(
    fake: FakePubSubServer, topic: str
) -> None:
    queue = PubSubQueue(PROJECT, topic, create=False, request_timeout=1)
    try:
        with pytest.raises(QueueUnavailable) as raised:
            queue.claim(0.2)
        assert raised.value.__cause__ is not None
    finally:
        queue.close()


def test_a_malformed_message_is_dropped_and_the_next_one_claimed(
    fake: FakePubSubServer, topic: str
) -> None:
    queue = PubSubQueue(PROJECT, topic)
    try:
        queue.claim(0)  # creates the topic and the subscription
        fake.publish_raw(f"projects/{PROJECT}/topics/{topic}", b"not json")
        queue.put(Message(job_id=2, queue="q"))
        delivery = queue.claim(5)
        assert delivery is not None
        assert delivery.message.job_id == 2
        queue.ack(delivery)
        assert fake.stored(queue.subscription_path) == 0  # the malformed one was acked too
    finally:
        queue.close()


def test_an_ack_deadline_under_pubsubs_minimum_still_hides_the_message_that_long(
    fake: FakePubSubServer, topic: str
) -> None:
    queue = PubSubQueue(PROJECT, topic, ack_deadline=1)
    try:
        queue.put(Message(job_id=3, queue="q"))
        held = queue.claim(5)
        assert held is not None
        assert queue.claim(0.3) is None
        started = time.monotonic()
        again = queue.claim(5)
        assert again is not None
        assert again.message == held.message
        assert time.monotonic() - started < 2
        queue.ack(again)
    finally:
        queue.close()


def test_an_outage_raises_queue_unavailable_then_recovers_without_loss(
    fake: FakePubSubServer, topic: str
) -> None:
    queue = PubSubQueue(PROJECT, topic, ack_deadline=1, request_timeout=1)
    try:
        queue.put(Message(job_id=1, queue="q"))
        held = queue.claim(5)
        assert held is not None
        fake.stop()
        started = time.monotonic()
        with pytest.raises(QueueUnavailable) as raised:
            queue.ack(held)
        assert raised.value.__cause__ is not None
        with pytest.raises(QueueUnavailable):
            queue.put(Message(job_id=2, queue="q"))
        with pytest.raises(QueueUnavailable):
            queue.claim(0.2)
        assert time.monotonic() - started < 10  # bounded by request_timeout, not SDK defaults
        fake.start()  # same port, same state
        _put_when_back(queue, Message(job_id=2, queue="q"))  # the channel reconnects itself
        seen: set[int] = set()
        deadline = time.monotonic() + 10
        while len(seen) < 2 and time.monotonic() < deadline:
            delivery = queue.claim(1)
            if delivery is not None:
                seen.add(delivery.message.job_id)
                queue.ack(delivery)
        assert seen == {1, 2}  # the unacked one came back after its ack deadline
    finally:
        queue.close()


def _put_when_back(queue: PubSubQueue, message: Message) -> None:
    """gRPC waits (backoff of about a second) before it connects again: retry, as callers of
    a QueueUnavailable queue do."""
    deadline = time.monotonic() + 10
    while True:
        try:
            queue.put(message)
            return
        except QueueUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_depth_is_zero_meaning_unknown(fake: FakePubSubServer, topic: str) -> None:
    queue = PubSubQueue(PROJECT, topic)
    try:
        queue.put(Message(job_id=1, queue="q"))
        assert queue.depth() == 0  # documented: Pub/Sub's data plane cannot count
    finally:
        queue.close()


def test_a_closed_queue_raises_queue_unavailable(fake: FakePubSubServer, topic: str) -> None:
    queue = PubSubQueue(PROJECT, topic)
    queue.close()
    with pytest.raises(QueueUnavailable):
        queue.put(Message(job_id=1, queue="q"))
