"""Open the dispatch queue named by `CHIDORI_QUEUE_URL` (called by the composition root)."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from chidori.config import ConfigError
from chidori.queues.base import DispatchQueue
from chidori.store import Database

ACCEPTED = (
    "db (the default), amqp://... or amqps://... (RabbitMQ), "
    "pubsub://PROJECT/TOPIC (Google Pub/Sub), "
    "azure://NAMESPACE/QUEUE?connection_env=VAR (Azure Service Bus)"
)

AZURE_CONNECTION_ENV = "CHIDORI_AZURE_SERVICEBUS_CONNECTION_STRING"


def open_queue(url: str, store: Database) -> DispatchQueue:
    """The queue for `url`: `db` or empty for the in-database queue on `store`,
    `amqp://USER:PASSWORD@HOST:PORT/VHOST` or `amqps://...` for RabbitMQ,
    `pubsub://PROJECT/TOPIC[?subscription=NAME]` for Google Pub/Sub,
    `azure://NAMESPACE/QUEUE[?connection_env=VAR]` for Azure Service Bus. Raises ConfigError
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
        # Our own option, `?queue=NAME`, picks the queue (default chidori.queues.dispatch); the rest
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
        return _open_azure(url)
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


def _open_azure(url: str) -> DispatchQueue:
    """`azure://[NAMESPACE]/[QUEUE][?connection_env=VAR][&queue=NAME]`: the Service Bus queue
    QUEUE (default chidori-dispatch). The connection string, which holds the SAS key, is read
    from the environment variable VAR (default CHIDORI_AZURE_SERVICEBUS_CONNECTION_STRING), never
    from the URL, so the URL is safe to echo. NAMESPACE, if given, must be the connection
    string's Endpoint host: a guard against a variable that points at another namespace."""
    import os  # here, with the rest of this branch: the environment is read per call, not at import

    try:
        from chidori.queues.azure import DEFAULT_QUEUE, AzureServiceBusQueue
    except ImportError as exc:
        raise ConfigError(
            "CHIDORI_QUEUE_URL names Azure Service Bus, but its client is not installed: "
            "pip install 'chidori[azure]'"
        ) from exc
    form = "an Azure Service Bus queue is azure://[NAMESPACE]/[QUEUE][?connection_env=VAR]"
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        raise ConfigError(
            f"CHIDORI_QUEUE_URL: {form}; put the connection string (with its key) in the "
            "environment variable, not in the URL"
        )
    options = parse_qsl(parts.query, keep_blank_values=True)
    unknown = sorted({key for key, _ in options if key not in ("connection_env", "queue")})
    path = parts.path.strip("/")
    names = [value for key, value in options if key == "queue"]
    if unknown or "/" in path or (path and names and names[-1] != path):
        raise ConfigError(
            f"CHIDORI_QUEUE_URL: {form}"
            + (f" (unknown options: {', '.join(unknown)})" if unknown else "")
        )
    queue_name = path or (names[-1] if names else DEFAULT_QUEUE)
    variables = [value for key, value in options if key == "connection_env"]
    variable = variables[-1] if variables else AZURE_CONNECTION_ENV
    connection_string = os.environ.get(variable, "").strip()
    if not connection_string:
        raise ConfigError(
            f"CHIDORI_QUEUE_URL names Azure Service Bus, but the environment variable {variable} "
            "holding its connection string is not set"
        )
    try:
        queue = AzureServiceBusQueue(connection_string, queue_name)
    except ValueError as exc:
        raise ConfigError(f"{variable}: {exc}") from exc
    namespace = parts.hostname
    if namespace and namespace.lower() != queue.namespace.split(":")[0].lower():
        queue.close()
        raise ConfigError(
            f"CHIDORI_QUEUE_URL names the namespace {namespace}, but {variable} is a "
            f"connection string for {queue.namespace}"
        )
    return queue
