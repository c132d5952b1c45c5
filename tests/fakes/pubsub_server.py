"""A small in-process Google Cloud Pub/Sub server for tests: a test double, not the service.

It follows the documented Pub/Sub v1 API (the `google.pubsub.v1` protos, served over gRPC, as
the official emulator does) for the calls the official client makes on Chidori's code path:

- `google.pubsub.v1.Publisher`: CreateTopic, GetTopic, Publish;
- `google.pubsub.v1.Subscriber`: CreateSubscription, GetSubscription, Pull, Acknowledge,
  ModifyAckDeadline.

Requests and responses are the SDK's own generated message types (`google.pubsub_v1.types`),
registered as generic gRPC handlers, so the bytes on the wire are those of the real API. The
official client reaches it through `PUBSUB_EMULATOR_HOST=127.0.0.1:PORT` (an insecure channel,
anonymous credentials), which is the SDK's transport boundary.

What it models, as the API reference describes it: resource names (`projects/P/topics/T`,
`projects/P/subscriptions/S`); NOT_FOUND / ALREADY_EXISTS / INVALID_ARGUMENT; a message
published to a topic goes to every subscription that existed at publish time; Pull hands out
visible messages with a fresh ack id and hides each for the subscription's ack deadline
(10..600 s, default 10); an unacked message becomes visible again when its deadline passes;
ModifyAckDeadline sets a new deadline counted from now (0 = visible again at once, up to 600);
Acknowledge deletes the message; ack ids that expired or were superseded by a redelivery are
ignored (the documented behaviour without exactly-once delivery). A Pull waits (long poll)
until a message is visible or just before the caller's deadline, then answers, possibly empty.

What it does not model: ordering keys, exactly-once delivery, dead-letter topics, retention,
filters, push, StreamingPull, IAM, quotas, or any timing of the real service. Messages are
handed out first in, first out, which the service does not promise.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import empty_pb2, timestamp_pb2
from google.pubsub_v1 import types

DEFAULT_ACK_DEADLINE = 10
MAX_ACK_DEADLINE = 600
ANSWER_MARGIN = 0.05  # a pull answers this long before the caller's deadline


@dataclass
class _Stored:
    message_id: str
    data: bytes
    attributes: dict[str, str]
    published: timestamp_pb2.Timestamp
    visible_at: float = 0.0
    ack_id: str | None = None  # the ack id of the current delivery, if any
    deliveries: int = 0


@dataclass
class _Subscription:
    name: str
    topic: str
    ack_deadline: int
    messages: list[_Stored] = field(default_factory=list)


class FakePubSubServer:
    """Start with `start()`; `host` is what PUBSUB_EMULATOR_HOST should say. `stop()` and a
    later `start()` model an outage: the state (topics, subscriptions, messages) survives."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._topics: set[str] = set()
        self._subscriptions: dict[str, _Subscription] = {}
        self._ids = itertools.count(1)
        self._server: grpc.Server | None = None
        self.port = 0

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
        server.add_generic_rpc_handlers((self._publisher(), self._subscriber()))
        port = server.add_insecure_port(f"127.0.0.1:{self.port}")
        if port == 0:
            raise RuntimeError(f"could not bind 127.0.0.1:{self.port}")
        self.port = port
        server.start()
        self._server = server

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None).wait()
            self._server = None
        with self._lock:
            self._lock.notify_all()

    # ---- inspection for tests --------------------------------------------------------------

    def stored(self, subscription: str) -> int:
        """How many messages the subscription holds, delivered or not (not acked)."""
        with self._lock:
            return len(self._subscriptions[subscription].messages)

    def publish_raw(self, topic: str, data: bytes) -> None:
        """Publish bytes directly, e.g. a malformed message."""
        with self._lock:
            self._store(topic, [types.PubsubMessage(data=data)])

    # ---- Publisher ---------------------------------------------------------------------------

    def _publisher(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            "google.pubsub.v1.Publisher",
            {
                "CreateTopic": _unary(self._create_topic, types.Topic, types.Topic),
                "GetTopic": _unary(self._get_topic, types.GetTopicRequest, types.Topic),
                "Publish": _unary(self._publish, types.PublishRequest, types.PublishResponse),
            },
        )

    def _create_topic(self, request: types.Topic, context: grpc.ServicerContext) -> types.Topic:
        _check_name(request.name, "topics", context)
        with self._lock:
            if request.name in self._topics:
                context.abort(grpc.StatusCode.ALREADY_EXISTS, "Topic already exists")
            self._topics.add(request.name)
        return types.Topic(name=request.name)

    def _get_topic(
        self, request: types.GetTopicRequest, context: grpc.ServicerContext
    ) -> types.Topic:
        with self._lock:
            if request.topic not in self._topics:
                context.abort(grpc.StatusCode.NOT_FOUND, "Topic not found")
        return types.Topic(name=request.topic)

    def _publish(
        self, request: types.PublishRequest, context: grpc.ServicerContext
    ) -> types.PublishResponse:
        if not request.messages:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "No messages")
        with self._lock:
            if request.topic not in self._topics:
                context.abort(grpc.StatusCode.NOT_FOUND, "Topic not found")
            ids = self._store(request.topic, list(request.messages))
            self._lock.notify_all()
        return types.PublishResponse(message_ids=ids)

    def _store(self, topic: str, messages: list[types.PubsubMessage]) -> list[str]:
        ids = []
        for message in messages:
            message_id = str(next(self._ids))
            published = timestamp_pb2.Timestamp()
            published.GetCurrentTime()
            for subscription in self._subscriptions.values():
                if subscription.topic == topic:
                    subscription.messages.append(
                        _Stored(
                            message_id=message_id,
                            data=bytes(message.data),
                            attributes=dict(message.attributes),
                            published=published,
                        )
                    )
            ids.append(message_id)
        return ids

    # ---- Subscriber --------------------------------------------------------------------------

    def _subscriber(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            "google.pubsub.v1.Subscriber",
            {
                "CreateSubscription": _unary(
                    self._create_subscription, types.Subscription, types.Subscription
                ),
                "GetSubscription": _unary(
                    self._get_subscription, types.GetSubscriptionRequest, types.Subscription
                ),
                "Pull": _unary(self._pull, types.PullRequest, types.PullResponse),
                "Acknowledge": _unary(self._acknowledge, types.AcknowledgeRequest, None),
                "ModifyAckDeadline": _unary(
                    self._modify_ack_deadline, types.ModifyAckDeadlineRequest, None
                ),
            },
        )

    def _create_subscription(
        self, request: types.Subscription, context: grpc.ServicerContext
    ) -> types.Subscription:
        _check_name(request.name, "subscriptions", context)
        deadline = request.ack_deadline_seconds or DEFAULT_ACK_DEADLINE
        if not DEFAULT_ACK_DEADLINE <= deadline <= MAX_ACK_DEADLINE:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "ack_deadline_seconds must be in [10, 600]"
            )
        with self._lock:
            if request.topic not in self._topics:
                context.abort(grpc.StatusCode.NOT_FOUND, "Topic not found")
            if request.name in self._subscriptions:
                context.abort(grpc.StatusCode.ALREADY_EXISTS, "Subscription already exists")
            self._subscriptions[request.name] = _Subscription(request.name, request.topic, deadline)
        return types.Subscription(
            name=request.name, topic=request.topic, ack_deadline_seconds=deadline
        )

    def _get_subscription(
        self, request: types.GetSubscriptionRequest, context: grpc.ServicerContext
    ) -> types.Subscription:
        with self._lock:
            subscription = self._find(request.subscription, context)
            return types.Subscription(
                name=subscription.name,
                topic=subscription.topic,
                ack_deadline_seconds=subscription.ack_deadline,
            )

    def _pull(
        self, request: types.PullRequest, context: grpc.ServicerContext
    ) -> types.PullResponse:
        if request.max_messages <= 0:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "max_messages must be positive")
        with self._lock:
            while True:
                subscription = self._find(request.subscription, context)
                now = time.monotonic()
                visible = [m for m in subscription.messages if m.visible_at <= now]
                if visible:
                    return types.PullResponse(
                        received_messages=[
                            self._deliver(stored, subscription, now)
                            for stored in visible[: request.max_messages]
                        ]
                    )
                remaining = context.time_remaining()
                wait = 1.0 if remaining is None else remaining - ANSWER_MARGIN
                if wait <= 0 or request.return_immediately or not context.is_active():
                    return types.PullResponse()
                hidden = [m.visible_at - now for m in subscription.messages]
                self._lock.wait(min([wait, 1.0, *hidden]))

    def _deliver(self, stored: _Stored, subscription: _Subscription, now: float) -> Any:
        stored.deliveries += 1
        stored.ack_id = f"{stored.message_id}-{stored.deliveries}"
        stored.visible_at = now + subscription.ack_deadline
        return types.ReceivedMessage(
            ack_id=stored.ack_id,
            message=types.PubsubMessage(
                data=stored.data,
                attributes=stored.attributes,
                message_id=stored.message_id,
                publish_time=stored.published,
            ),
        )

    def _acknowledge(
        self, request: types.AcknowledgeRequest, context: grpc.ServicerContext
    ) -> empty_pb2.Empty:
        if not request.ack_ids:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "No ack ids")
        ack_ids = set(request.ack_ids)
        with self._lock:
            subscription = self._find(request.subscription, context)
            now = time.monotonic()
            # An expired ack id no longer holds its message: acking it does nothing.
            subscription.messages = [
                m for m in subscription.messages if not (m.ack_id in ack_ids and m.visible_at > now)
            ]
        return empty_pb2.Empty()

    def _modify_ack_deadline(
        self, request: types.ModifyAckDeadlineRequest, context: grpc.ServicerContext
    ) -> empty_pb2.Empty:
        if not 0 <= request.ack_deadline_seconds <= MAX_ACK_DEADLINE:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "ack_deadline_seconds must be in [0, 600]"
            )
        ack_ids = set(request.ack_ids)
        with self._lock:
            subscription = self._find(request.subscription, context)
            now = time.monotonic()
            for stored in subscription.messages:
                if stored.ack_id in ack_ids and stored.visible_at > now:
                    stored.visible_at = now + request.ack_deadline_seconds
                    if request.ack_deadline_seconds == 0:
                        stored.ack_id = None
            self._lock.notify_all()
        return empty_pb2.Empty()

    def _find(self, name: str, context: grpc.ServicerContext) -> _Subscription:
        subscription = self._subscriptions.get(name)
        if subscription is None:
            context.abort(grpc.StatusCode.NOT_FOUND, "Subscription does not exist")
        assert subscription is not None
        return subscription


def _check_name(name: str, collection: str, context: grpc.ServicerContext) -> None:
    parts = name.split("/")
    if len(parts) != 4 or parts[0] != "projects" or parts[2] != collection or "" in parts:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"Invalid resource name: {name!r}")


def _unary(
    handler: Callable[[Any, grpc.ServicerContext], Any],
    request_type: Any,
    response_type: Any,
) -> grpc.RpcMethodHandler:
    """A unary handler whose messages are the SDK's generated types (None = Empty)."""
    return grpc.unary_unary_rpc_method_handler(
        handler,
        request_deserializer=request_type.deserialize,
        response_serializer=(
            empty_pb2.Empty.SerializeToString if response_type is None else response_type.serialize
        ),
    )
