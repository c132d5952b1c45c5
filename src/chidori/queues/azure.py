"""The Azure Service Bus dispatch queue (`CHIDORI_QUEUE_URL=azure://NAMESPACE/QUEUE`; the `azure`
extra). Not yet verified against the live service: it is tested with the official SDK against a
local fake built from the AMQP 1.0 and Service Bus documentation (tests/fakes/servicebus_server.py).

Credentials: a Service Bus connection string (`Endpoint=sb://NS.servicebus.windows.net/;
SharedAccessKeyName=...;SharedAccessKey=...`, or `SharedAccessSignature=...`), which the factory
reads from an environment variable, never from the URL: the key must not end up in a URL that is
echoed, logged or shown in the UI. Nothing in this module logs or raises it either; messages name
the namespace host and the queue only. The queue itself must exist (creating entities needs the
Manage right, which a dispatch channel should not hold).

Durability: `put` returns once `send_messages` returned, i.e. once Service Bus accepted the
transfer (the SDK sends unsettled and waits for the `accepted` disposition).

Consuming: `claim` receives in PEEK_LOCK mode, one message at a time, without prefetch. A claimed
message is locked for the queue's lock duration (LockDuration, 30 s to 5 min, set on the
queue); neither acked nor nacked by then, Service Bus delivers it again, e.g. when this consumer
died. Locks are not renewed: a handler must ack quickly (Chidori's dispatch consumer does).
After MaxDeliveryCount deliveries (10 by default) Service Bus moves a message to the queue's
dead-letter sub-queue; that costs nothing but latency, because the store is the truth. `ack` is
complete, `nack(requeue=True)` is abandon (visible again at once), `nack(requeue=False)`
completes (drops) it. A body that is not a dispatch message is dead-lettered (reason
`MalformedDispatchMessage`) so it stays inspectable, and claiming goes on. An ack or nack whose
lock was lost (expired, or the connection that took it is gone) is ignored with a log line: the
message comes back and the scheduler re-reads the store, as for a repeated message.

Because the receive link keeps the credit of a `claim` that timed out, a message put afterwards
may be locked for this instance before the next `claim` asks for it; it is returned by that next
`claim` (or comes back to any consumer when its lock expires if this instance stops claiming).

Depth: the data plane (AMQP) cannot count messages. `depth()` asks the management plane
(`ServiceBusAdministrationClient.get_queue_runtime_properties`, HTTPS) for the active message
count (locked and dead-lettered messages excluded). That needs the Manage right on the
connection string; without it (or if the management endpoint is unreachable) `depth()` raises
QueueUnavailable. The count may lag the data plane slightly.

Failures: every SDK error (ServiceBusError and the rest of azure.core's AzureError family, such as
ServiceBusConnectionError, OperationTimeoutError, authentication errors) becomes
`QueueUnavailable` (`from` the original), and the sender or receiver that failed is closed, so
the next call opens a fresh one (reconnect). The SDK's own retries are bounded by
`request_timeout`.

Threading: the SDK's sender and receiver are not thread-safe, so puts are serialized by one lock
and claims, acks and nacks by another (a put never waits behind a claim; an ack from another
thread waits until a running claim returns). A delivery may be acked or nacked from any thread.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import AzureError
from azure.servicebus import (
    ServiceBusClient,
    ServiceBusMessage,
    ServiceBusReceivedMessage,
    ServiceBusReceiveMode,
)
from azure.servicebus.exceptions import MessageAlreadySettled, MessageLockLostError
from azure.servicebus.management import ServiceBusAdministrationClient

from chidori.queues.base import Delivery, DispatchQueue, Message, QueueUnavailable

log = logging.getLogger(__name__)

DEFAULT_QUEUE = "chidori-dispatch"
MIN_RECEIVE_SECONDS = 0.05  # the shortest wait of a receive (a wait of 0 never asks the broker)
MALFORMED_REASON = "MalformedDispatchMessage"


@dataclass(frozen=True)
class _Receipt:
    message: ServiceBusReceivedMessage
    generation: int  # which receiver took it: a lock lives on the link that took it


class AzureServiceBusQueue(DispatchQueue):
    def __init__(
        self,
        connection_string: str,
        queue_name: str = DEFAULT_QUEUE,
        *,
        request_timeout: float = 10.0,
    ) -> None:
        """`connection_string`: the namespace's (or the queue's) connection string, kept in
        memory only. `queue_name`: an existing queue. `request_timeout`: seconds one operation
        (with the SDK's retries) may take before it raises QueueUnavailable."""
        if not queue_name or "/" in queue_name:
            raise ValueError(f"the Service Bus queue must be a name, not {queue_name!r}")
        if request_timeout <= 0:
            raise ValueError("request_timeout must be positive")
        self.namespace = _namespace(connection_string)
        self.queue_name = queue_name
        self._connection_string = connection_string
        self._request_timeout = request_timeout
        # The SDK's sender and receiver are not thread-safe: one lock each, so that a put is never
        # queued behind a claim that waits for a message; `_lock` guards the shared state.
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._receive_lock = threading.Lock()
        self._client: ServiceBusClient | None = None
        self._sender: Any = None
        self._receiver: Any = None
        self._generation = 0
        self._admin: ServiceBusAdministrationClient | None = None
        self._closed = False

    def __repr__(self) -> str:  # never the connection string
        return f"AzureServiceBusQueue({self.namespace!r}, {self.queue_name!r})"

    # ---- the interface ----------------------------------------------------------------------

    def put(self, message: Message) -> None:
        body = json.dumps({"job_id": message.job_id, "queue": message.queue})
        with self._send_lock, self._guard("send to", "sender"):
            self._open_sender().send_messages(
                ServiceBusMessage(body, content_type="application/json"),
                timeout=self._request_timeout,
            )

    def claim(self, timeout: float) -> Delivery | None:
        wait = max(timeout, MIN_RECEIVE_SECONDS)
        with self._receive_lock, self._guard("receive from", "receiver"):
            receiver = self._open_receiver()
            while True:
                received = receiver.receive_messages(max_message_count=1, max_wait_time=wait)
                if not received:
                    return None
                delivery = self._accept(receiver, received[0])
                if delivery is not None:
                    return delivery
                wait = MIN_RECEIVE_SECONDS  # a malformed one used the turn; look once more

    def ack(self, delivery: Delivery) -> None:
        self._settle(delivery, "complete")

    def nack(self, delivery: Delivery, requeue: bool = True) -> None:
        self._settle(delivery, "abandon" if requeue else "complete")

    def depth(self) -> int:
        """Active messages, from the management plane (see the module docstring)."""
        with self._lock:
            if self._closed:
                raise QueueUnavailable("the Service Bus queue was closed")
            if self._admin is None:
                self._admin = ServiceBusAdministrationClient.from_connection_string(
                    self._connection_string,
                    connection_timeout=self._request_timeout,
                    read_timeout=self._request_timeout,
                    retry_total=1,
                )
            admin = self._admin
        try:  # the admin client is thread-safe (azure-core HTTP pipeline)
            properties = admin.get_queue_runtime_properties(
                self.queue_name, timeout=self._request_timeout
            )
        except AzureError as exc:
            raise QueueUnavailable(
                f"Service Bus management unavailable (could not read the depth of "
                f"{self.queue_name} on {self.namespace}): {type(exc).__name__}: {_short(exc)}"
            ) from exc
        return int(properties.active_message_count or 0)

    def close(self) -> None:
        """Close the sender, receiver and clients. Messages claimed and not acked stay locked
        until their lock expires, then come back."""
        with self._lock:
            self._closed = True
        with self._send_lock:
            self._drop("sender")
        with self._receive_lock:
            self._drop("receiver")
        with self._lock:
            client, self._client = self._client, None
            admin, self._admin = self._admin, None
        for resource in (client, admin):
            if resource is not None:
                try:
                    resource.close()
                except Exception as exc:  # closing is best effort
                    log.debug("closing a Service Bus client failed: %r", exc)

    # ---- helpers ----------------------------------------------------------------------------

    @contextmanager
    def _guard(self, action: str, handler: str) -> Iterator[None]:
        """Translate SDK errors into QueueUnavailable, closing the failed `handler` ("sender" or
        "receiver") so the next call reconnects."""
        if self._closed:
            raise QueueUnavailable("the Service Bus queue was closed")
        try:
            yield
        except (AzureError, ValueError, RuntimeError) as exc:
            # AzureError covers ServiceBusError and its connection, timeout and authentication
            # kinds; the SDK raises ValueError/RuntimeError for a handler that shut down under it.
            self._drop(handler)
            raise QueueUnavailable(
                f"Service Bus unavailable (could not {action} {self.queue_name} on "
                f"{self.namespace}): {type(exc).__name__}: {_short(exc)}"
            ) from exc

    def _client_for_use(self) -> ServiceBusClient:
        with self._lock:
            return self._client_locked()

    def _client_locked(self) -> ServiceBusClient:
        if self._closed:
            raise QueueUnavailable("the Service Bus queue was closed")
        if self._client is None:
            # Retries bounded so that one call stays near request_timeout, not the SDK's minutes.
            self._client = ServiceBusClient.from_connection_string(
                self._connection_string,
                retry_total=1,
                retry_backoff_factor=0.2,
                retry_backoff_max=1.0,
                socket_timeout=min(self._request_timeout, 5.0),
            )
        return self._client

    def _open_sender(self) -> Any:
        if self._sender is None:
            sender = self._client_for_use().get_queue_sender(self.queue_name)
            sender.__enter__()  # opens the link now (with the SDK's retries), not on first send
            self._sender = sender
        return self._sender

    def _open_receiver(self) -> Any:
        if self._receiver is None:
            receiver = self._client_for_use().get_queue_receiver(
                self.queue_name,
                receive_mode=ServiceBusReceiveMode.PEEK_LOCK,
                prefetch_count=0,
            )
            receiver.__enter__()  # open before the first receive: its wait is not for connecting
            self._receiver = receiver
            self._generation += 1
        return self._receiver

    def _drop(self, handler: str) -> None:
        resource = getattr(self, f"_{handler}")
        setattr(self, f"_{handler}", None)
        if resource is not None:
            try:
                resource.close()
            except Exception as exc:  # it already failed; closing is best effort
                log.debug("closing the Service Bus %s failed: %r", handler, exc)

    def _accept(self, receiver: Any, received: ServiceBusReceivedMessage) -> Delivery | None:
        body = b"".join(received.body) if not isinstance(received.body, bytes) else received.body
        try:
            data = json.loads(body)
            message = Message(job_id=int(data["job_id"]), queue=str(data["queue"]))
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("dead-lettering a malformed dispatch message %r: %s", body[:200], exc)
            receiver.dead_letter_message(
                received, reason=MALFORMED_REASON, error_description=str(exc)[:200]
            )
            return None
        return Delivery(message=message, receipt=_Receipt(received, self._generation))

    def _settle(self, delivery: Delivery, how: str) -> None:
        receipt = _receipt(delivery)
        with self._receive_lock, self._guard(f"{how} a message on", "receiver"):
            if self._receiver is None or receipt.generation != self._generation:
                # Its lock belonged to a receiver link that is gone; Service Bus will deliver
                # the message again when the lock expires.
                log.info("not settling a message whose receiver was replaced; it will come back")
                return
            try:
                if how == "complete":
                    self._receiver.complete_message(receipt.message)
                else:
                    self._receiver.abandon_message(receipt.message)
            except (MessageLockLostError, MessageAlreadySettled) as exc:
                log.info("the lock of a dispatch message was lost (%s); it will come back", exc)


def _receipt(delivery: Delivery) -> _Receipt:
    if not isinstance(delivery.receipt, _Receipt):
        raise TypeError("this delivery was not claimed from an AzureServiceBusQueue")
    return delivery.receipt


def _namespace(connection_string: str) -> str:
    """The host of the connection string's Endpoint, for messages (the only part of it that is
    safe to show). Raises ValueError, naming no value, for a string without one."""
    for part in connection_string.split(";"):
        key, _, value = part.partition("=")
        if key.strip().lower() == "endpoint" and "://" in value:
            host = value.split("://", 1)[1].strip("/").split("/")[0]
            if host:
                return host
    raise ValueError("the Service Bus connection string has no Endpoint=sb://NAMESPACE/")


def _short(exc: BaseException) -> str:
    """The first line of an SDK error, capped: the SDK's messages never hold the key, but can
    be long."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return text[:300]
