"""The Google Cloud Pub/Sub dispatch queue (`CHIDORI_QUEUE_URL=pubsub://PROJECT/TOPIC`; the
`pubsub` extra). Not yet verified against the live service: it is tested with the official
client against a local fake of the Pub/Sub v1 gRPC API (tests/fakes/pubsub_server.py).

Resources: one topic and one subscription on it (default name `TOPIC-chidori`), both created on
first use if missing, by whichever instance comes first (a publisher too, so messages published
before any consumer started are kept: Pub/Sub only keeps messages for subscriptions that exist
when they are published). Every Chidori replica uses the same subscription: they share its
messages (competing consumers), they do not each get a copy.

Durability: `put` publishes with the official PublisherClient and returns once the publish
future resolved, i.e. once Pub/Sub stored the message.

Consuming: `claim` uses synchronous Pull (`max_messages=1`) with a gRPC deadline of what is left
of `timeout`, pulling again after an empty answer, so it returns within `timeout` (a
`timeout` of 0 still makes one pull, with a deadline of MIN_PULL_SECONDS). A claimed message
is hidden from other consumers for `ack_deadline` seconds (the subscription's ack deadline, or
a ModifyAckDeadline right after the pull when `ack_deadline` is under Pub/Sub's 10 s minimum);
if it is neither acked nor nacked by then, Pub/Sub delivers it again, e.g. when this consumer
died. A handler needing longer must ack quickly (Chidori's dispatch consumer does). `ack` is
Acknowledge; `nack(requeue=True)` is ModifyAckDeadline(0), visible again at once;
`nack(requeue=False)` acknowledges (drops) it. Pub/Sub may deliver a message more than once and
does not keep publish order without ordering keys (which Chidori does not use: they would
serialize all dispatch); both are harmless because the store, not the message, is the truth.
A pull whose caller gave up (deadline) may still take a message on the server: it comes back
after the ack deadline.

Depth: Pub/Sub's data plane has no way to count the messages of a subscription (the count
exists only as the Cloud Monitoring metric `subscription/num_undelivered_messages`, a separate
API that lags by minutes). `depth()` therefore returns 0, meaning "unknown", not "empty"; use the
store for queue depth, as the scheduler and UI do.

Failures: every google.api_core error (and a publish that does not resolve in time) becomes
`QueueUnavailable` (`from` the original). Transient errors of ack and nack are retried for up
to `request_timeout` seconds; pulls are not retried (the loop pulls again anyway).
`PUBSUB_EMULATOR_HOST` is honoured by the official client (insecure channel, anonymous
credentials), for the Pub/Sub emulator and for tests.

Threading: the clients are thread-safe; so is this class. A delivery may be acked or nacked
from any thread.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import google.cloud.pubsub_v1 as pubsub_v1
from google.api_core import exceptions as google_exceptions
from google.api_core import retry as google_retry

from chidori.queues.base import Delivery, DispatchQueue, Message, QueueUnavailable

log = logging.getLogger(__name__)

SUBSCRIPTION_SUFFIX = "-chidori"
MIN_PULL_SECONDS = 0.05  # the shortest deadline a pull gets (a deadline must be in the future)
MIN_ACK_DEADLINE = 10  # Pub/Sub's bounds for a subscription's ack deadline
MAX_ACK_DEADLINE = 600


@dataclass(frozen=True)
class _Receipt:
    ack_id: str


class PubSubQueue(DispatchQueue):
    def __init__(
        self,
        project: str,
        topic: str,
        subscription: str | None = None,
        *,
        ack_deadline: float = 60.0,
        request_timeout: float = 10.0,
        create: bool = True,
    ) -> None:
        """`ack_deadline`: seconds a claimed message stays hidden (at most 600). `create`:
        create the topic and subscription if they are missing (needs the Pub/Sub Editor role);
        without it they must exist."""
        for what, value in (("project", project), ("topic", topic), ("subscription", subscription)):
            if value is not None and (not value or "/" in value):
                raise ValueError(f"the Pub/Sub {what} must be a name, not {value!r}")
        if not 0 < ack_deadline <= MAX_ACK_DEADLINE:
            raise ValueError(f"ack_deadline must be in (0, {MAX_ACK_DEADLINE}] seconds")
        self.topic_path = f"projects/{project}/topics/{topic}"
        self.subscription_path = (
            f"projects/{project}/subscriptions/{subscription or topic + SUBSCRIPTION_SUFFIX}"
        )
        self._ack_deadline = math.ceil(ack_deadline)
        self._request_timeout = request_timeout
        self._create = create
        self._lock = threading.Lock()
        self._publisher: Any = None
        self._subscriber: Any = None
        self._ready = False
        self._closed = False

    # ---- the interface --------------------------------------------------------------------

    def put(self, message: Message) -> None:
        data = json.dumps({"job_id": message.job_id, "queue": message.queue}).encode()
        with self._guard(f"publish to {self.topic_path} for"):
            publisher, _ = self._clients()
            future = publisher.publish(
                self.topic_path, data, retry=self._retry(), timeout=self._request_timeout
            )
            try:
                future.result(timeout=self._request_timeout + 5)
            except TimeoutError as exc:
                raise QueueUnavailable(
                    f"Pub/Sub did not confirm the message within {self._request_timeout} s"
                ) from exc

    def claim(self, timeout: float) -> Delivery | None:
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            with self._guard("pull from"):
                _, subscriber = self._clients()
                try:
                    response = subscriber.pull(
                        request={"subscription": self.subscription_path, "max_messages": 1},
                        retry=None,
                        timeout=max(deadline - time.monotonic(), MIN_PULL_SECONDS),
                    )
                except google_exceptions.DeadlineExceeded:
                    response = None
                for received in response.received_messages if response is not None else ():
                    delivery = self._accept(subscriber, received)
                    if delivery is not None:
                        return delivery
            if time.monotonic() >= deadline:
                return None

    def ack(self, delivery: Delivery) -> None:
        receipt = _receipt(delivery)
        with self._guard("acknowledge on"):
            _, subscriber = self._clients()
            subscriber.acknowledge(
                request={"subscription": self.subscription_path, "ack_ids": [receipt.ack_id]},
                retry=self._retry(),
                timeout=self._request_timeout,
            )

    def nack(self, delivery: Delivery, requeue: bool = True) -> None:
        if not requeue:
            self.ack(delivery)  # Pub/Sub drops a message by acknowledging it
            return
        receipt = _receipt(delivery)
        with self._guard("release a message on"):
            _, subscriber = self._clients()
            self._modify_deadline(subscriber, receipt.ack_id, 0)

    def depth(self) -> int:
        """Always 0, meaning unknown: Pub/Sub's data plane cannot count a subscription's
        messages (see the module docstring). Never raises."""
        return 0

    def close(self) -> None:
        """Flush pending publishes and close the channels. Messages claimed and not acked stay
        hidden until their ack deadline passes, then come back."""
        with self._lock:
            self._closed = True
            publisher, subscriber = self._publisher, self._subscriber
            self._publisher = self._subscriber = None
        if publisher is not None:
            try:
                publisher.stop()
                publisher.transport.close()
            except Exception as exc:  # closing is best effort
                log.debug("closing the Pub/Sub publisher failed: %r", exc)
        if subscriber is not None:
            try:
                subscriber.close()
            except Exception as exc:
                log.debug("closing the Pub/Sub subscriber failed: %r", exc)

    # ---- helpers ----------------------------------------------------------------------------

    @contextmanager
    def _guard(self, action: str) -> Iterator[None]:
        if self._closed:
            raise QueueUnavailable("the Pub/Sub queue was closed")
        try:
            yield
        except (google_exceptions.GoogleAPIError, RuntimeError) as exc:
            # GoogleAPIError covers the call errors and RetryError; RuntimeError is what the
            # publisher raises after close() from another thread.
            if isinstance(exc, google_exceptions.NotFound):
                self._ready = False  # deleted behind our back: create it again next time
            raise QueueUnavailable(
                f"Pub/Sub unavailable (could not {action} {self.subscription_path}): {exc!r}"
            ) from exc

    def _clients(self) -> tuple[Any, Any]:
        """The publisher and subscriber clients, creating them and (with `create`) the topic
        and the subscription on first use."""
        with self._lock:
            if self._closed:
                raise QueueUnavailable("the Pub/Sub queue was closed")
            if self._publisher is None:
                # Built lazily, after the environment (PUBSUB_EMULATOR_HOST) is final.
                self._publisher = pubsub_v1.PublisherClient()
                self._subscriber = pubsub_v1.SubscriberClient()
            if not self._ready:
                if self._create:
                    self._ensure_resources()
                self._ready = True
            return self._publisher, self._subscriber

    def _ensure_resources(self) -> None:
        options = {"retry": self._retry(), "timeout": self._request_timeout}
        with suppress(google_exceptions.AlreadyExists):
            self._publisher.create_topic(request={"name": self.topic_path}, **options)
        subscription = {
            "name": self.subscription_path,
            "topic": self.topic_path,
            "ack_deadline_seconds": min(
                max(self._ack_deadline, MIN_ACK_DEADLINE), MAX_ACK_DEADLINE
            ),
        }
        with suppress(google_exceptions.AlreadyExists):
            self._subscriber.create_subscription(request=subscription, **options)

    def _accept(self, subscriber: Any, received: Any) -> Delivery | None:
        try:
            data = json.loads(received.message.data)
            message = Message(job_id=int(data["job_id"]), queue=str(data["queue"]))
        except (ValueError, TypeError, KeyError) as exc:
            log.warning(
                "dropping a malformed dispatch message %r: %s", received.message.data[:200], exc
            )
            subscriber.acknowledge(
                request={"subscription": self.subscription_path, "ack_ids": [received.ack_id]},
                retry=self._retry(),
                timeout=self._request_timeout,
            )
            return None
        if self._ack_deadline < MIN_ACK_DEADLINE:
            self._modify_deadline(subscriber, received.ack_id, self._ack_deadline)
        return Delivery(message=message, receipt=_Receipt(ack_id=received.ack_id))

    def _modify_deadline(self, subscriber: Any, ack_id: str, seconds: int) -> None:
        subscriber.modify_ack_deadline(
            request={
                "subscription": self.subscription_path,
                "ack_ids": [ack_id],
                "ack_deadline_seconds": seconds,
            },
            retry=self._retry(),
            timeout=self._request_timeout,
        )

    def _retry(self) -> google_retry.Retry:
        """Retry transient errors (UNAVAILABLE, ...) for at most `request_timeout` seconds."""
        return google_retry.Retry(
            predicate=google_retry.if_transient_error,
            initial=0.1,
            maximum=1.0,
            timeout=self._request_timeout,
        )


def _receipt(delivery: Delivery) -> _Receipt:
    if not isinstance(delivery.receipt, _Receipt):
        raise TypeError("this delivery was not claimed from a PubSubQueue")
    return delivery.receipt
