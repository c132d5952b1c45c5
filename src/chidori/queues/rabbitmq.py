"""The RabbitMQ dispatch queue (`CHIDORI_QUEUE_URL=amqp://...`; the `rabbitmq` extra).

Durability: the queue is declared durable, messages are persistent (delivery_mode 2), and
`put` returns only once the broker confirmed the message (publisher confirms), with `mandatory`
set so a message the broker cannot route raises instead of vanishing.

Consuming: `claim` reads from a consumer (`basic_consume`, manual acks) started lazily on the
first `claim`, so an instance that only publishes (the outbox relay) never takes messages. The
broker pushes at most `prefetch` unacked messages to one instance (`basic_qos`, 1 by default):
an instance holds at most that many deliveries at once, and one message may wait, pushed but
not yet claimed, in an idle instance until it claims again or closes. Unacked deliveries go
back to the queue when the connection closes or dies; that is how a dead consumer's messages
reach another one.

Threading: a pika BlockingConnection is not thread-safe, so each instance owns ONE connection
and one channel, and every use of them happens under the instance's lock. `claim` waits in
short slices (`process_data_events` of at most 50 ms) and releases the lock between slices, so
other threads can `put`, `ack` and `nack` while one waits. A delivery may be acked or nacked
from any thread. For more parallelism, use one instance per consumer thread.

Failures: every pika error becomes `QueueUnavailable` (`from` the pika error) and drops the
connection; the next call connects again (lazily). Before each call the connection is polled,
and a connection found dead (heartbeat timeout, broker restart) is replaced before anything is
sent, so an idle publisher does not fail once per outage. Deliveries belong to the connection
they came on: acking or nacking one whose connection died raises `QueueUnavailable` (the broker
redelivers it anyway).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pika
import pika.exceptions

from chidori.queues.base import Delivery, DispatchQueue, Message, QueueUnavailable

log = logging.getLogger(__name__)

DEFAULT_QUEUE_NAME = "chidori.queues.dispatch"
WAIT_SLICE = 0.05  # longest time `claim` holds the lock while waiting for the broker


@dataclass(frozen=True)
class _Receipt:
    connection: int  # which connection of this instance the delivery came on
    delivery_tag: int


class RabbitMQQueue(DispatchQueue):
    def __init__(
        self,
        url: str,
        queue_name: str = DEFAULT_QUEUE_NAME,
        *,
        prefetch: int = 1,
        connection_name: str | None = None,
    ) -> None:
        if prefetch < 1:
            raise ValueError("prefetch must be at least 1")
        try:
            self._parameters = pika.URLParameters(url)
        except Exception as exc:  # pika raises several types for a bad URL
            raise ValueError(f"not a valid AMQP URL: {exc}") from exc
        if self._parameters.blocked_connection_timeout is None:
            # A broker short of memory or disk blocks publishers; fail instead of hanging.
            self._parameters.blocked_connection_timeout = 30.0
        self._parameters.client_properties = {
            "connection_name": connection_name or f"chidori {queue_name} pid {os.getpid()}"
        }
        self._queue_name = queue_name
        self._prefetch = prefetch
        self._lock = threading.RLock()
        self._connection: Any = None
        self._channel: Any = None
        self._generation = 0  # increases with every new connection
        self._consumer_tag: str | None = None
        self._buffer: deque[Delivery] = deque()  # pushed by the broker, not yet claimed
        self._outstanding: set[int] = set()  # delivery tags claimed and not yet acked/nacked
        self._closed = False

    # ---- the interface --------------------------------------------------------------------

    def put(self, message: Message) -> None:
        body = json.dumps({"job_id": message.job_id, "queue": message.queue}).encode()
        properties = pika.BasicProperties(delivery_mode=2, content_type="application/json")
        with self._lock, self._guard("publish"):
            channel = self._ready()
            try:
                channel.basic_publish(
                    exchange="",
                    routing_key=self._queue_name,
                    body=body,
                    properties=properties,
                    mandatory=True,
                )
            except (pika.exceptions.UnroutableError, pika.exceptions.NackError) as exc:
                # The channel is still fine; the broker refused this one message.
                raise QueueUnavailable(f"RabbitMQ did not accept the message: {exc!r}") from exc

    def claim(self, timeout: float) -> Delivery | None:
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            with self._lock, self._guard("consume"):
                self._ready()
                self._ensure_consumer()
                if not self._buffer:
                    remaining = deadline - time.monotonic()
                    self._connection.process_data_events(
                        time_limit=max(0.0, min(WAIT_SLICE, remaining))
                    )
                if self._buffer:
                    delivery = self._buffer.popleft()
                    assert isinstance(delivery.receipt, _Receipt)
                    self._outstanding.add(delivery.receipt.delivery_tag)
                    return delivery
            if time.monotonic() >= deadline:
                return None
            time.sleep(0)  # let other threads take the lock between slices

    def ack(self, delivery: Delivery) -> None:
        receipt = _receipt(delivery)
        with self._lock, self._guard("ack"):
            channel = self._channel_for(receipt)
            if channel is None:
                return
            channel.basic_ack(delivery_tag=receipt.delivery_tag)

    def nack(self, delivery: Delivery, requeue: bool = True) -> None:
        receipt = _receipt(delivery)
        with self._lock, self._guard("nack"):
            channel = self._channel_for(receipt)
            if channel is None:
                return
            channel.basic_nack(delivery_tag=receipt.delivery_tag, requeue=requeue)

    def depth(self) -> int:
        """Messages ready in the broker's queue. Unacked ones are not counted: those claimed,
        and those the broker pushed ahead to a consumer (up to `prefetch` per instance)."""
        with self._lock, self._guard("read the depth of"):
            channel = self._ready()
            declared = channel.queue_declare(queue=self._queue_name, durable=True, passive=True)
            return int(declared.method.message_count)

    def close(self) -> None:
        """Close the connection; the broker requeues every delivery not acked yet."""
        with self._lock:
            self._closed = True
            self._drop()

    # ---- connection handling --------------------------------------------------------------

    @contextmanager
    def _guard(self, action: str) -> Iterator[None]:
        """Turn pika and socket errors into QueueUnavailable and forget the broken connection,
        so the next call connects again."""
        if self._closed:
            raise QueueUnavailable("the RabbitMQ queue was closed")
        try:
            yield
        except (pika.exceptions.AMQPError, OSError) as exc:
            self._drop()
            raise QueueUnavailable(
                f"RabbitMQ unavailable (could not {action} queue {self._queue_name!r}): {exc!r}"
            ) from exc

    def _ready(self) -> Any:
        """The open channel, connecting first if there is none or the current one died."""
        if self._connection is not None:
            try:
                # Also answers heartbeats and notices a connection the broker closed.
                self._connection.process_data_events(time_limit=0)
            except (pika.exceptions.AMQPError, OSError) as exc:
                log.info("RabbitMQ connection lost (%r); connecting again", exc)
                self._drop()
            else:
                if self._connection.is_open and self._channel.is_open:
                    return self._channel
                self._drop()
        connection = pika.BlockingConnection(self._parameters)
        try:
            channel = connection.channel()
            channel.confirm_delivery()
            channel.queue_declare(queue=self._queue_name, durable=True)
            channel.basic_qos(prefetch_count=self._prefetch)
        except BaseException:
            _close_quietly(connection)
            raise
        self._connection = connection
        self._channel = channel
        self._generation += 1
        return channel

    def _ensure_consumer(self) -> None:
        if self._consumer_tag is not None and self._consumer_tag in self._channel.consumer_tags:
            return
        # No consumer yet on this channel, or the broker cancelled it (e.g. queue deleted).
        self._channel.queue_declare(queue=self._queue_name, durable=True)
        self._consumer_tag = self._channel.basic_consume(
            queue=self._queue_name, on_message_callback=self._on_message, auto_ack=False
        )

    def _on_message(self, channel: Any, method: Any, _properties: Any, body: bytes) -> None:
        try:
            data = json.loads(body)
            message = Message(job_id=int(data["job_id"]), queue=str(data["queue"]))
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("dropping a malformed dispatch message %r: %s", body[:200], exc)
            channel.basic_reject(delivery_tag=method.delivery_tag, requeue=False)
            return
        receipt = _Receipt(connection=self._generation, delivery_tag=method.delivery_tag)
        self._buffer.append(Delivery(message=message, receipt=receipt))

    def _channel_for(self, receipt: _Receipt) -> Any:
        """The channel to ack `receipt` on, None if it was already acked or nacked; raises
        QueueUnavailable if the delivery came on a connection that has died since."""
        if self._connection is not None:
            try:
                self._connection.process_data_events(time_limit=0)
            except (pika.exceptions.AMQPError, OSError) as exc:
                self._drop()
                raise QueueUnavailable(
                    f"RabbitMQ connection lost; the broker will redeliver the message: {exc!r}"
                ) from exc
        if (
            self._connection is None
            or receipt.connection != self._generation
            or not self._channel.is_open
        ):
            raise QueueUnavailable(
                "the connection this message came on is gone; the broker will redeliver it"
            )
        if receipt.delivery_tag not in self._outstanding:
            return None  # acked or nacked before: acking again would close the channel
        self._outstanding.discard(receipt.delivery_tag)
        return self._channel

    def _drop(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        self._consumer_tag = None
        self._buffer.clear()
        self._outstanding.clear()
        if connection is not None:
            _close_quietly(connection)


def _close_quietly(connection: Any) -> None:
    try:
        if connection.is_open:
            connection.close()
    except Exception as exc:  # a dead connection may fail to close; nothing left to do
        log.debug("closing a RabbitMQ connection failed: %r", exc)


def _receipt(delivery: Delivery) -> _Receipt:
    if not isinstance(delivery.receipt, _Receipt):
        raise TypeError("this delivery was not claimed from a RabbitMQQueue")
    return delivery.receipt
