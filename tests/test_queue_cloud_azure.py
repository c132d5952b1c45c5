"""Azure Service Bus queue behaviour beyond the shared contract (tests/test_queue_contract.py):
choosing it from CHIDORI_QUEUE_URL, keeping the key out of URLs and messages, outages, lock
expiry, malformed messages and depth. All through the official SDK against the local AMQP 1.0
fake (tests/fakes/servicebus_server.py), not the service.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chidori.config import ConfigError
from chidori.queues.base import Message, QueueUnavailable
from chidori.queues.factory import AZURE_CONNECTION_ENV, open_queue
from chidori.store import Database, open_database

pytest.importorskip("azure.servicebus", reason="the azure extra is not installed")

from chidori.queues.azure import DEFAULT_QUEUE, MALFORMED_REASON, AzureServiceBusQueue
from tests.fakes.servicebus_server import FakeServiceBus

LOCK_SECONDS = 1.0


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeServiceBus]:
    server = FakeServiceBus(lock_duration=LOCK_SECONDS)
    server.start()
    server.create_queue(DEFAULT_QUEUE)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", server.ca_file)  # the admin client's HTTPS
    yield server
    server.close()


@pytest.fixture
def queue(fake: FakeServiceBus) -> Iterator[AzureServiceBusQueue]:
    queue = AzureServiceBusQueue(fake.connection_string, request_timeout=3)
    yield queue
    queue.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Database]:
    store = open_database(f"sqlite:///{tmp_path / 'chidori.db'}")
    yield store
    store.dispose()


# ---- CHIDORI_QUEUE_URL ------------------------------------------------------------------------


def test_open_queue_reads_the_connection_string_from_the_default_variable(
    fake: FakeServiceBus, store: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(AZURE_CONNECTION_ENV, fake.connection_string)
    queue = open_queue("azure://", store)  # connects lazily
    try:
        assert isinstance(queue, AzureServiceBusQueue)
        assert queue.queue_name == DEFAULT_QUEUE
        queue.put(Message(job_id=1, queue="q"))  # and it works end to end
        delivery = queue.claim(5)
        assert delivery is not None
        assert delivery.message == Message(job_id=1, queue="q")
        queue.ack(delivery)
    finally:
        queue.close()


@pytest.mark.parametrize(
    "url",
    ["azure://127.0.0.1/jobs?connection_env=MY_SB", "azure://?connection_env=MY_SB&queue=jobs"],
)
def test_open_queue_takes_the_queue_and_the_variable_from_the_url(
    fake: FakeServiceBus, store: Database, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("MY_SB", fake.connection_string)
    queue = open_queue(url, store)
    assert isinstance(queue, AzureServiceBusQueue)
    assert queue.queue_name == "jobs"
    assert fake.key not in repr(queue)
    queue.close()


def test_open_queue_names_a_missing_variable(
    store: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MY_SB", raising=False)
    with pytest.raises(ConfigError, match="MY_SB"):
        open_queue("azure://ns.servicebus.windows.net/q?connection_env=MY_SB", store)


def test_open_queue_refuses_a_connection_string_for_another_namespace(
    fake: FakeServiceBus, store: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(AZURE_CONNECTION_ENV, fake.connection_string)
    with pytest.raises(ConfigError, match=r"ns\.servicebus\.windows\.net") as raised:
        open_queue("azure://ns.servicebus.windows.net/q", store)
    assert fake.key not in raised.value.message


def test_open_queue_does_not_echo_a_bad_connection_string(
    store: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(AZURE_CONNECTION_ENV, "SharedAccessKey=s3cr3t;nothing-else")
    with pytest.raises(ConfigError, match=AZURE_CONNECTION_ENV) as raised:
        open_queue("azure:///q", store)
    assert "s3cr3t" not in raised.value.message


@pytest.mark.parametrize(
    "url",
    [
        "azure://ns/a/b",
        "azure://ns/q?subscription=x",
        "azure://ns/q?queue=other",
        "azure://RootManageSharedAccessKey:s3cr3t@ns/q",
    ],
)
def test_open_queue_rejects_malformed_azure_urls(store: Database, url: str) -> None:
    with pytest.raises(ConfigError, match=r"azure://\[NAMESPACE\]/\[QUEUE\]") as raised:
        open_queue(url, store)
    assert "s3cr3t" not in raised.value.message


# ---- behaviour ----------------------------------------------------------------------------


def test_put_claim_ack_removes_the_message_from_the_broker(
    fake: FakeServiceBus, queue: AzureServiceBusQueue
) -> None:
    queue.put(Message(job_id=7, queue="etl"))
    assert fake.stored(DEFAULT_QUEUE) == 1
    delivery = queue.claim(5)
    assert delivery is not None
    assert delivery.message == Message(job_id=7, queue="etl")
    queue.ack(delivery)
    assert fake.stored(DEFAULT_QUEUE) == 0
    assert fake.dead_letters(DEFAULT_QUEUE) == []


def test_nack_abandons_so_the_message_comes_back_at_once(queue: AzureServiceBusQueue) -> None:
    queue.put(Message(job_id=3, queue="q"))
    first = queue.claim(5)
    assert first is not None
    queue.nack(first)
    started = time.monotonic()
    again = queue.claim(5)
    assert again is not None
    assert again.message == first.message
    assert time.monotonic() - started < LOCK_SECONDS  # not by lock expiry
    queue.ack(again)


def test_nack_without_requeue_drops_rather_than_dead_letters(
    fake: FakeServiceBus, queue: AzureServiceBusQueue
) -> None:
    queue.put(Message(job_id=3, queue="q"))
    delivery = queue.claim(5)
    assert delivery is not None
    queue.nack(delivery, requeue=False)
    assert fake.stored(DEFAULT_QUEUE) == 0
    assert fake.dead_letters(DEFAULT_QUEUE) == []


def test_an_unacked_claim_comes_back_after_the_lock_expires_even_when_its_receiver_closed(
    fake: FakeServiceBus,
) -> None:
    first = AzureServiceBusQueue(fake.connection_string)
    second = AzureServiceBusQueue(fake.connection_string)
    try:
        first.put(Message(job_id=11, queue="q"))
        held = first.claim(5)
        assert held is not None
        first.close()  # the consumer dies holding the lock
        assert fake.active(DEFAULT_QUEUE) == 0  # closing the link did not release it
        redelivered = second.claim(5)
        assert redelivered is not None
        assert redelivered.message == held.message
        second.ack(redelivered)
        assert fake.stored(DEFAULT_QUEUE) == 0
    finally:
        first.close()
        second.close()


def test_acking_after_the_lock_expired_is_harmless_and_the_message_comes_back(
    fake: FakeServiceBus, queue: AzureServiceBusQueue
) -> None:
    queue.put(Message(job_id=4, queue="q"))
    held = queue.claim(5)
    assert held is not None
    time.sleep(LOCK_SECONDS + 0.2)
    queue.ack(held)  # lock lost: ignored (logged), not an outage
    again = queue.claim(5)
    assert again is not None
    assert again.message == held.message
    queue.ack(again)
    assert fake.stored(DEFAULT_QUEUE) == 0


def test_a_malformed_message_is_dead_lettered_and_the_next_one_claimed(
    fake: FakeServiceBus, queue: AzureServiceBusQueue
) -> None:
    fake.send_raw(DEFAULT_QUEUE, b"not json")
    fake.send_raw(DEFAULT_QUEUE, b'{"job_id": "x"}')
    queue.put(Message(job_id=2, queue="q"))
    delivery = queue.claim(5)
    assert delivery is not None
    assert delivery.message.job_id == 2
    queue.ack(delivery)
    assert fake.dead_letters(DEFAULT_QUEUE) == [
        (b"not json", MALFORMED_REASON),
        (b'{"job_id": "x"}', MALFORMED_REASON),
    ]
    assert fake.stored(DEFAULT_QUEUE) == 0


def test_depth_counts_active_messages_through_the_management_api(
    fake: FakeServiceBus, queue: AzureServiceBusQueue
) -> None:
    if not fake.https:
        pytest.skip("the fake serves HTTPS only with the cryptography package")
    assert queue.depth() == 0
    for job_id in range(3):
        queue.put(Message(job_id=job_id, queue="q"))
    assert queue.depth() == 3
    delivery = queue.claim(5)
    assert delivery is not None
    assert queue.depth() == 2  # the locked one is not waiting
    queue.ack(delivery)
    assert queue.depth() == 2


def test_a_wrong_key_raises_queue_unavailable_without_showing_it(fake: FakeServiceBus) -> None:
    wrong_key = "d3Jvbmcta2V5LW5vdC10aGUtcmVhbC1vbmU="
    wrong = fake.connection_string.replace(fake.key, wrong_key)
    queue = AzureServiceBusQueue(wrong, request_timeout=2)
    try:
        for action in (lambda: queue.put(Message(job_id=1, queue="q")), queue.depth):
            with pytest.raises(QueueUnavailable) as raised:
                action()
            assert raised.value.__cause__ is not None
            assert wrong_key not in raised.value.message
    finally:
        queue.close()
    assert fake.stored(DEFAULT_QUEUE) == 0


def test_a_missing_queue_raises_queue_unavailable(fake: FakeServiceBus) -> None:
    queue = AzureServiceBusQueue(fake.connection_string, "no-such-queue", request_timeout=2)
    try:
        with pytest.raises(QueueUnavailable, match="no-such-queue"):
            queue.put(Message(job_id=1, queue="q"))
    finally:
        queue.close()


def test_an_outage_raises_queue_unavailable_then_recovers_without_loss(
    fake: FakeServiceBus,
) -> None:
    queue = AzureServiceBusQueue(fake.connection_string, request_timeout=2)
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
        if fake.https:
            with pytest.raises(QueueUnavailable):
                queue.depth()
        assert time.monotonic() - started < 15  # bounded by request_timeout, not SDK defaults
        fake.start()  # same port, same state
        queue.put(Message(job_id=2, queue="q"))  # a fresh sender: reconnected
        seen: set[int] = set()
        deadline = time.monotonic() + 10
        while len(seen) < 2 and time.monotonic() < deadline:
            delivery = queue.claim(1)
            if delivery is not None:
                seen.add(delivery.message.job_id)
                queue.ack(delivery)
        assert seen == {1, 2}  # the unacked one came back after its lock expired
        assert fake.stored(DEFAULT_QUEUE) == 0
    finally:
        queue.close()


def test_a_closed_queue_raises_queue_unavailable(fake: FakeServiceBus) -> None:
    queue = AzureServiceBusQueue(fake.connection_string)
    queue.close()
    with pytest.raises(QueueUnavailable):
        queue.put(Message(job_id=1, queue="q"))
    with pytest.raises(QueueUnavailable):
        queue.depth()
