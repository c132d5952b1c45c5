"""One contract for every dispatch queue: the in-database queue on SQLite and PostgreSQL,
RabbitMQ, Google Pub/Sub (through its official client, against the local fake of its gRPC
API in tests/fakes/pubsub_server.py) and Azure Service Bus (through the official SDK, against
the local AMQP 1.0 fake in tests/fakes/servicebus_server.py). Each behaviour is checked against
each implementation, as Dramatiq does for brokers; a check a service cannot promise is skipped
for it, with the reason.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from chidori.config import ConfigError
from chidori.queues.base import Delivery, DispatchQueue, Message, QueueUnavailable
from chidori.queues.db import DatabaseQueue
from chidori.queues.factory import open_queue
from chidori.store import Database, open_database
from tests.conftest import unavailable

if TYPE_CHECKING:
    from tests.fakes.pubsub_server import FakePubSubServer
    from tests.fakes.servicebus_server import FakeServiceBus

DEFAULT_RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"


# ---- RabbitMQ helpers (also used by test_outbox) --------------------------------------------


def rabbitmq_url_or_skip() -> str:
    """The test broker's URL; skips (or fails, with CHIDORI_REQUIRE_SERVICES=1) if it is down."""
    url = os.environ.get("CHIDORI_TEST_RABBITMQ_URL", DEFAULT_RABBITMQ_URL)
    try:
        import pika

        pika.BlockingConnection(pika.URLParameters(url)).close()
    except Exception as exc:
        unavailable("RabbitMQ", repr(exc))
    return url


def unique_queue_name() -> str:
    return f"chidori.test.{secrets.token_hex(6)}"


def delete_rabbitmq_queue(url: str, name: str) -> None:
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        connection.channel().queue_delete(queue=name)
    finally:
        connection.close()


# ---- one fixture for every implementation ---------------------------------------------------


class QueueFactory:
    """Opens instances of one implementation over the same underlying queue.

    `no_depth` / `no_order`: why the implementation cannot report an exact depth / keep the
    order messages were put in (None: it can), so those checks are skipped for it."""

    def __init__(
        self,
        kind: str,
        make: Callable[[float], DispatchQueue],
        *,
        no_depth: str | None = None,
        no_order: str | None = None,
    ) -> None:
        self.kind = kind
        self._make = make
        self._opened: list[DispatchQueue] = []
        self.no_depth = no_depth
        self.no_order = no_order

    def open(self, visibility_timeout: float = 30.0) -> DispatchQueue:
        """A new consumer/producer; `visibility_timeout` matters for the db queue and Pub/Sub
        (the ack deadline)."""
        queue = self._make(visibility_timeout)
        self._opened.append(queue)
        return queue

    def abandon(self, queue: DispatchQueue) -> None:
        """The consumer goes away without acking what it claimed."""
        if self.kind == "rabbitmq":
            queue.close()  # the broker requeues unacked deliveries of a closed connection
        # db and pubsub: nothing to do, the visibility timeout (ack deadline) brings it back

    def close_all(self) -> None:
        for queue in self._opened:
            queue.close()


def _open_migrated(url: str) -> Database:
    store = open_database(url)
    store.migrate()
    return store


PUBSUB_NO_DEPTH = "Pub/Sub's data plane cannot count messages; PubSubQueue.depth() is 0 = unknown"
PUBSUB_NO_ORDER = "Pub/Sub keeps publish order only with ordering keys, which Chidori does not use"


@pytest.fixture
def pubsub_fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakePubSubServer]:
    """A fake Pub/Sub server on 127.0.0.1 that the official client reaches through
    PUBSUB_EMULATOR_HOST."""
    pytest.importorskip("google.cloud.pubsub_v1", reason="the pubsub extra is not installed")
    from tests.fakes.pubsub_server import FakePubSubServer

    server = FakePubSubServer()
    server.start()
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", server.host)
    yield server
    server.stop()


@pytest.fixture
def servicebus_fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeServiceBus]:
    """A fake Azure Service Bus (AMQP 1.0, plus HTTPS for the queue's runtime properties) on
    127.0.0.1 that the official SDK reaches through an emulator connection string; its queue's
    lock duration (the visibility timeout) is 1 s."""
    pytest.importorskip("azure.servicebus", reason="the azure extra is not installed")
    from tests.fakes.servicebus_server import FakeServiceBus

    server = FakeServiceBus(lock_duration=1.0)
    server.start()
    server.create_queue("chidori-dispatch")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", server.ca_file)  # the admin client's HTTPS
    yield server
    server.close()


@pytest.fixture(params=["db-sqlite", "db-postgres", "rabbitmq", "pubsub-fake", "azure-fake"])
def queues(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[QueueFactory]:
    if request.param == "azure-fake":
        fake = request.getfixturevalue("servicebus_fake")
        from chidori.queues.azure import AzureServiceBusQueue

        # The lock duration is a property of the queue (the fake's), not of each consumer.
        factory = QueueFactory(
            "azure",
            lambda _vt: AzureServiceBusQueue(fake.connection_string),
            no_depth=None if fake.https else "the fake serves HTTPS only with `cryptography`",
        )
        yield factory
        factory.close_all()
        return
    if request.param == "pubsub-fake":
        request.getfixturevalue("pubsub_fake")
        from chidori.queues.pubsub import PubSubQueue

        topic = f"chidori-test-{secrets.token_hex(6)}"
        factory = QueueFactory(
            "pubsub",
            lambda vt: PubSubQueue("chidori-test", topic, ack_deadline=vt),
            no_depth=PUBSUB_NO_DEPTH,
            no_order=PUBSUB_NO_ORDER,
        )
        yield factory
        factory.close_all()
        return
    if request.param == "rabbitmq":
        url = rabbitmq_url_or_skip()
        name = unique_queue_name()
        from chidori.queues.rabbitmq import RabbitMQQueue

        factory = QueueFactory("rabbitmq", lambda _vt: RabbitMQQueue(url, queue_name=name))
        yield factory
        factory.close_all()
        delete_rabbitmq_queue(url, name)
        return
    if request.param == "db-sqlite":
        store = _open_migrated(f"sqlite:///{tmp_path / 'chidori.db'}")
    else:
        store = _open_migrated(request.getfixturevalue("postgres_schema_url"))
    factory = QueueFactory("db", lambda vt: DatabaseQueue(store, visibility_timeout=vt))
    yield factory
    factory.close_all()
    store.dispose()


@pytest.fixture
def queue(queues: QueueFactory) -> DispatchQueue:
    return queues.open()


def _claim(queue: DispatchQueue, timeout: float = 5.0) -> Delivery:
    delivery = queue.claim(timeout)
    assert delivery is not None, "expected a message"
    return delivery


def _assert_depth(queues: QueueFactory, queue: DispatchQueue, expected: int) -> None:
    """Check the depth where the implementation can count it (see QueueFactory.no_depth)."""
    if queues.no_depth is None:
        assert queue.depth() == expected


def _assert_order(queues: QueueFactory, seen: list[int], expected: list[int]) -> None:
    """The exact order where the implementation keeps it, else only the same messages."""
    assert (seen if queues.no_order is None else sorted(seen)) == expected


# ---- the contract -----------------------------------------------------------------------------


def test_put_then_claim_returns_the_message(queue: DispatchQueue) -> None:
    queue.put(Message(job_id=7, queue="etl"))
    delivery = _claim(queue)
    assert delivery.message == Message(job_id=7, queue="etl")
    queue.ack(delivery)


def test_messages_are_claimed_in_the_order_they_were_put(
    queues: QueueFactory, queue: DispatchQueue
) -> None:
    if queues.no_order is not None:
        pytest.skip(queues.no_order)
    for job_id in range(1, 6):
        queue.put(Message(job_id=job_id, queue="default"))
    seen = []
    for _ in range(5):
        delivery = _claim(queue)
        seen.append(delivery.message.job_id)
        queue.ack(delivery)
    assert seen == [1, 2, 3, 4, 5]


def test_a_batch_claim_takes_several_messages_and_a_batch_ack_removes_them(
    queues: QueueFactory,
) -> None:
    queue = queues.open()
    for job_id in range(1, 6):
        queue.put(Message(job_id=job_id, queue="default"))
    taken: list[int] = []
    deadline = time.monotonic() + 10
    while len(taken) < 3 and time.monotonic() < deadline:
        batch = queue.claim_batch(3 - len(taken), timeout=2.0)
        assert len(batch) <= 3 - len(taken)
        queue.ack_batch(batch)
        taken += [d.message.job_id for d in batch]
    assert len(set(taken)) == 3
    rest: list[int] = []
    while len(rest) < 2 and time.monotonic() < deadline:
        delivery = queue.claim(2.0)
        if delivery is not None:
            rest.append(delivery.message.job_id)
            queue.ack(delivery)
    assert sorted(taken + rest) == [1, 2, 3, 4, 5]
    assert queue.claim(0.2) is None
    queue.close()


def test_claim_on_an_empty_queue_returns_none_after_about_the_timeout(
    queue: DispatchQueue,
) -> None:
    started = time.monotonic()
    assert queue.claim(0.3) is None
    elapsed = time.monotonic() - started
    assert 0.25 <= elapsed < 1.5


def test_claim_returns_promptly_when_a_message_arrives_while_waiting(
    queues: QueueFactory,
) -> None:
    consumer, producer = queues.open(), queues.open()
    consumer.claim(0)  # connect and start consuming before the clock starts
    timer = threading.Timer(0.2, lambda: producer.put(Message(job_id=1, queue="q")))
    started = time.monotonic()
    timer.start()
    try:
        delivery = _claim(consumer, timeout=10)
    finally:
        timer.join()
    assert time.monotonic() - started < 1.5
    assert delivery.message.job_id == 1
    consumer.ack(delivery)


def test_an_acked_message_is_gone_for_good(queues: QueueFactory) -> None:
    queue = queues.open()
    queue.put(Message(job_id=1, queue="q"))
    queue.ack(_claim(queue))
    assert queue.claim(0.2) is None
    _assert_depth(queues, queue, 0)
    queue.close()
    assert queues.open().claim(0.2) is None


def test_nack_with_requeue_delivers_the_message_again(queue: DispatchQueue) -> None:
    queue.put(Message(job_id=3, queue="q"))
    first = _claim(queue)
    queue.nack(first, requeue=True)
    again = _claim(queue)
    assert again.message == first.message
    queue.ack(again)
    assert queue.claim(0.2) is None


def test_nack_without_requeue_drops_the_message(queues: QueueFactory, queue: DispatchQueue) -> None:
    queue.put(Message(job_id=3, queue="q"))
    queue.nack(_claim(queue), requeue=False)
    assert queue.claim(0.3) is None
    _assert_depth(queues, queue, 0)


def test_an_unacked_claim_goes_to_another_consumer_after_the_first_goes_away(
    queues: QueueFactory,
) -> None:
    first = queues.open(visibility_timeout=1.0)
    second = queues.open(visibility_timeout=1.0)
    first.put(Message(job_id=11, queue="q"))
    held = _claim(first)
    assert second.claim(0.2) is None  # held by the first consumer meanwhile
    queues.abandon(first)
    redelivered = _claim(second, timeout=10)
    assert redelivered.message == held.message
    second.ack(redelivered)
    assert second.claim(0.2) is None


def test_depth_counts_the_waiting_messages(queues: QueueFactory, queue: DispatchQueue) -> None:
    if queues.no_depth is not None:
        pytest.skip(queues.no_depth)
    assert queue.depth() == 0
    for job_id in range(3):
        queue.put(Message(job_id=job_id, queue="q"))
    assert queue.depth() == 3
    delivery = _claim(queue)
    assert queue.depth() == 2  # the claimed one is not waiting
    queue.ack(delivery)
    # (RabbitMQ may now push the next message to this consumer ahead of its next claim, and
    # then counts it as unacked, not waiting: so no exact count here.)
    for _ in range(2):
        queue.ack(_claim(queue))
    assert queue.depth() == 0


def test_two_consumers_never_hold_the_same_message_at_once(queues: QueueFactory) -> None:
    total = 20
    producer = queues.open()
    for job_id in range(total):
        producer.put(Message(job_id=job_id, queue="q"))
    consumers = [queues.open() for _ in range(4)]
    lock = threading.Lock()
    held: set[int] = set()
    handled: list[int] = []
    overlaps: list[int] = []
    errors: list[BaseException] = []
    deadline = time.monotonic() + 30

    def consume(queue: DispatchQueue) -> None:
        try:
            while time.monotonic() < deadline:
                with lock:
                    if len(handled) >= total:
                        return
                delivery = queue.claim(0.2)
                if delivery is None:
                    continue
                job_id = delivery.message.job_id
                with lock:
                    if job_id in held:
                        overlaps.append(job_id)
                    held.add(job_id)
                time.sleep(0.01)  # "work" while holding the message
                with lock:
                    held.discard(job_id)
                    handled.append(job_id)
                queue.ack(delivery)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=consume, args=(c,)) for c in consumers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert overlaps == []
    assert sorted(handled) == list(range(total))


def test_messages_survive_reopening_the_queue(queues: QueueFactory) -> None:
    first = queues.open()
    for job_id in (1, 2, 3):
        first.put(Message(job_id=job_id, queue="q"))
    first.close()
    reopened = queues.open()
    _assert_depth(queues, reopened, 3)
    seen = []
    for _ in range(3):
        delivery = _claim(reopened)
        seen.append(delivery.message.job_id)
        reopened.ack(delivery)
    _assert_order(queues, seen, [1, 2, 3])


def test_a_delivery_may_be_acked_from_another_thread(
    queues: QueueFactory, queue: DispatchQueue
) -> None:
    queue.put(Message(job_id=5, queue="q"))
    delivery = _claim(queue)
    thread = threading.Thread(target=queue.ack, args=(delivery,))
    thread.start()
    thread.join()
    assert queue.claim(0.2) is None
    _assert_depth(queues, queue, 0)


# ---- the in-database queue only -------------------------------------------------------------


def test_db_a_stale_nack_does_not_disturb_the_newer_claim(tmp_path: Path) -> None:
    store = _open_migrated(f"sqlite:///{tmp_path / 'chidori.db'}")
    try:
        queue = DatabaseQueue(store, visibility_timeout=0.2)
        queue.put(Message(job_id=1, queue="q"))
        stale = _claim(queue)
        time.sleep(0.3)
        current = _claim(queue)  # the visibility timeout passed: claimed again
        queue.nack(stale, requeue=True)
        assert queue.claim(0) is None  # still hidden for the current holder
        queue.ack(current)
        assert queue.depth() == 0
    finally:
        store.dispose()


# ---- RabbitMQ only: the broker going away under the client ----------------------------------


class TcpProxy:
    """A TCP forwarder to the broker that the test can cut (an outage) and resume."""

    def __init__(self, host: str, port: int) -> None:
        self._upstream = (host, port)
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self.port = 0
        self.resume()

    def resume(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self._upstream)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        """Refuse new connections and break every open one."""
        if self._listener is not None:
            # shutdown() wakes the thread blocked in accept(); close() alone would not stop it
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


@pytest.fixture
def rabbitmq() -> Iterator[tuple[str, str]]:
    """(broker URL, a fresh queue name), the queue deleted afterwards."""
    url = rabbitmq_url_or_skip()
    name = unique_queue_name()
    yield url, name
    delete_rabbitmq_queue(url, name)


def _via_proxy(url: str, port: int) -> str:
    import pika

    parameters = pika.URLParameters(url)
    credentials = parameters.credentials
    vhost = parameters.virtual_host.replace("/", "%2F")
    return f"amqp://{credentials.username}:{credentials.password}@127.0.0.1:{port}/{vhost}"


def test_rabbitmq_outage_raises_queue_unavailable_then_reconnects_without_loss(
    rabbitmq: tuple[str, str],
) -> None:
    from chidori.queues.rabbitmq import RabbitMQQueue

    url, name = rabbitmq
    import pika

    upstream = pika.URLParameters(url)
    proxy = TcpProxy(upstream.host, upstream.port)
    queue = RabbitMQQueue(_via_proxy(url, proxy.port), queue_name=name)
    try:
        queue.put(Message(job_id=1, queue="q"))
        held = _claim(queue)
        proxy.cut()
        with pytest.raises(QueueUnavailable) as raised:
            queue.ack(held)  # its connection is gone: the broker will redeliver it
        assert raised.value.__cause__ is not None
        with pytest.raises(QueueUnavailable):
            queue.put(Message(job_id=2, queue="q"))
        with pytest.raises(QueueUnavailable):
            queue.claim(0.2)
        with pytest.raises(QueueUnavailable):
            queue.depth()
        proxy.resume()
        queue.put(Message(job_id=2, queue="q"))  # connects again on its own
        seen = []
        for _ in range(2):
            delivery = _claim(queue)
            seen.append(delivery.message.job_id)
            queue.ack(delivery)
        assert seen == [1, 2]  # the unacked message came back, first in line
        assert queue.claim(0.2) is None
    finally:
        queue.close()
        proxy.cut()


def _rabbitmqctl(*args: str) -> str:
    result = subprocess.run(
        ["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        pytest.skip(f"rabbitmqctl {args[0]} failed: {result.stderr.strip()[:200]}")
    return result.stdout


def _close_broker_connection(connection_name: str) -> None:
    listing = _rabbitmqctl("list_connections", "pid", "client_properties")
    marker = f'{{"connection_name","{connection_name}"}}'
    pids = [line.split("\t", 1)[0] for line in listing.splitlines() if marker in line]
    assert pids, f"no broker connection named {connection_name}"
    for pid in pids:
        _rabbitmqctl("close_connection", pid, "closed by the test")


def test_rabbitmq_connection_closed_by_the_broker_is_replaced_without_loss(
    rabbitmq: tuple[str, str],
) -> None:
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("rabbitmqctl is not installed here")
    from chidori.queues.rabbitmq import RabbitMQQueue

    url, name = rabbitmq
    connection_name = f"chidori-test-{secrets.token_hex(4)}"
    queue = RabbitMQQueue(url, queue_name=name, connection_name=connection_name)
    try:
        queue.put(Message(job_id=1, queue="q"))
        held = _claim(queue)
        _close_broker_connection(connection_name)
        with pytest.raises(QueueUnavailable):
            queue.ack(held)
        queue.put(Message(job_id=2, queue="q"))  # a new connection
        seen = []
        for _ in range(2):
            delivery = _claim(queue)
            seen.append(delivery.message.job_id)
            queue.ack(delivery)
        assert seen == [1, 2]
    finally:
        queue.close()


def test_rabbitmq_unreachable_broker_raises_queue_unavailable(rabbitmq: tuple[str, str]) -> None:
    from chidori.queues.rabbitmq import RabbitMQQueue

    with socket.socket() as probe:  # a port with nobody listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    queue = RabbitMQQueue(f"amqp://guest:guest@127.0.0.1:{port}/", queue_name=rabbitmq[1])
    with pytest.raises(QueueUnavailable):
        queue.put(Message(job_id=1, queue="q"))
    with pytest.raises(QueueUnavailable):
        queue.claim(0.1)
    queue.close()


def test_rabbitmq_instance_that_only_publishes_takes_no_messages(
    rabbitmq: tuple[str, str],
) -> None:
    from chidori.queues.rabbitmq import RabbitMQQueue

    url, name = rabbitmq
    publisher = RabbitMQQueue(url, queue_name=name)
    consumer = RabbitMQQueue(url, queue_name=name)
    try:
        publisher.put(Message(job_id=1, queue="q"))
        publisher.put(Message(job_id=2, queue="q"))
        assert publisher.depth() == 2
        assert [_claim(consumer).message.job_id] == [1]
    finally:
        publisher.close()
        consumer.close()


# ---- choosing the queue from CHIDORI_QUEUE_URL ----------------------------------------------


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Database]:
    store = _open_migrated(f"sqlite:///{tmp_path / 'chidori.db'}")
    yield store
    store.dispose()


@pytest.mark.parametrize("url", ["", "db", " db "])
def test_open_queue_gives_the_database_queue_by_default(sqlite_store: Database, url: str) -> None:
    assert isinstance(open_queue(url, sqlite_store), DatabaseQueue)


@pytest.mark.parametrize("url", ["amqp://guest:guest@127.0.0.1:5672/", "amqps://u:p@host/vh"])
def test_open_queue_gives_rabbitmq_for_amqp_urls(sqlite_store: Database, url: str) -> None:
    from chidori.queues.rabbitmq import RabbitMQQueue

    queue = open_queue(url, sqlite_store)  # connects lazily: no broker needed here
    assert isinstance(queue, RabbitMQQueue)
    queue.close()


@pytest.mark.parametrize("url", ["redis://h/0", "user:secret@host"])
def test_open_queue_rejects_unknown_urls_naming_the_accepted_forms(
    sqlite_store: Database, url: str
) -> None:
    with pytest.raises(ConfigError, match="amqp://") as raised:
        open_queue(url, sqlite_store)
    assert "secret" not in raised.value.message
