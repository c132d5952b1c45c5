"""Open the dispatch queue named by `CHIDORI_QUEUE_URL` (called by the composition root)."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from chidori.config import ConfigError
from chidori.queues.base import DispatchQueue
from chidori.store import Store

ACCEPTED = (
    "db (the default), amqp://... or amqps://... (RabbitMQ), "
    "pubsub://PROJECT/TOPIC (Google Pub/Sub)"
)


def open_queue(url: str, store: Store) -> DispatchQueue:
    """The queue for `url`: `db` or empty for the in-database queue on `store`,
    `amqp://USER:PASSWORD@HOST:PORT/VHOST` or `amqps://...` for RabbitMQ,
    `pubsub://PROJECT/TOPIC[?subscription=NAME]` for Google Pub/Sub. Raises ConfigError
    for anything else (without echoing the URL, which may hold a password)."""
    url = url.strip()
    scheme, separator, _rest = url.partition("://")
    scheme = scheme.lower() if separator else url.lower()
    if scheme in ("", "db"):
        from chidori.queues.db import DatabaseQueue

        return DatabaseQueue(store)
    if scheme in ("amqp", "amqps"):
        try:
            from chidori.queues.rabbitmq import RabbitMQQueue
        except ImportError as exc:
            raise ConfigError(
                "CHIDORI_QUEUE_URL names RabbitMQ, but its client is not installed: "
                "pip install 'chidori[rabbitmq]'"
            ) from exc
        # Our own option, `?queue=NAME`, picks the queue (default chidori.dispatch); the rest
        # of the URL is pika's.
        parts = urlsplit(url)
        options = parse_qsl(parts.query, keep_blank_values=True)
        names = [value for key, value in options if key == "queue"]
        rest = urlencode([(key, value) for key, value in options if key != "queue"])
        broker_url = urlunsplit(parts._replace(query=rest))
        try:
            if names:
                return RabbitMQQueue(broker_url, names[-1])
            return RabbitMQQueue(broker_url)
        except ValueError as exc:
            raise ConfigError(f"CHIDORI_QUEUE_URL: {exc}") from exc
    if scheme == "pubsub":
        return _open_pubsub(url)
    if scheme == "azure":
        raise ConfigError(
            "CHIDORI_QUEUE_URL: the azure:// queue (Azure Service Bus) is not available yet; "
            f"use {ACCEPTED}"
        )
    if separator and scheme.isalnum():
        raise ConfigError(f"CHIDORI_QUEUE_URL: unknown queue kind {scheme!r}; use {ACCEPTED}")
    raise ConfigError(f"CHIDORI_QUEUE_URL is not a queue URL; use {ACCEPTED}")


def _open_pubsub(url: str) -> DispatchQueue:
    """`pubsub://PROJECT/TOPIC[?subscription=NAME]` (default subscription `TOPIC-chidori`).
    Credentials come from the environment, as for every Google client (Application Default
    Credentials), or none with PUBSUB_EMULATOR_HOST."""
    try:
        from chidori.queues.pubsub import PubSubQueue
    except ImportError as exc:
        raise ConfigError(
            "CHIDORI_QUEUE_URL names Google Pub/Sub, but its client is not installed: "
            "pip install 'chidori[pubsub]'"
        ) from exc
    parts = urlsplit(url)
    project, topic = parts.netloc, parts.path.strip("/")
    options = parse_qsl(parts.query, keep_blank_values=True)
    unknown = sorted({key for key, _ in options if key != "subscription"})
    if not project or not topic or "/" in topic or unknown:
        raise ConfigError(
            "CHIDORI_QUEUE_URL: a Pub/Sub queue is pubsub://PROJECT/TOPIC[?subscription=NAME]"
            + (f" (unknown options: {', '.join(unknown)})" if unknown else "")
        )
    names = [value for key, value in options if key == "subscription"]
    try:
        return PubSubQueue(project, topic, names[-1] if names else None)
    except ValueError as exc:
        raise ConfigError(f"CHIDORI_QUEUE_URL: {exc}") from exc
