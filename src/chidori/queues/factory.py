"""Open the dispatch queue named by `CHIDORI_QUEUE_URL` (called by the composition root)."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from chidori.config import ConfigError
from chidori.queues.base import DispatchQueue
from chidori.store import Store

ACCEPTED = "db (the default), amqp://... or amqps://... (RabbitMQ)"


def open_queue(url: str, store: Store) -> DispatchQueue:
    """The queue for `url`: `db` or empty for the in-database queue on `store`,
    `amqp://USER:PASSWORD@HOST:PORT/VHOST` or `amqps://...` for RabbitMQ. Raises ConfigError
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
    if scheme in ("pubsub", "azure"):
        raise ConfigError(
            f"CHIDORI_QUEUE_URL: the {scheme}:// queue is not available yet; use {ACCEPTED}"
        )
    if separator and scheme.isalnum():
        raise ConfigError(f"CHIDORI_QUEUE_URL: unknown queue kind {scheme!r}; use {ACCEPTED}")
    raise ConfigError(f"CHIDORI_QUEUE_URL is not a queue URL; use {ACCEPTED}")
