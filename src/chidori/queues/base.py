"""The dispatch queue interface.

A message says "job N is waiting in queue Q"; it is never the only copy of a job (the store
is), so a lost or repeated message costs at most latency, never a job: the scheduler re-reads
the truth from the store, and admitting a job is a compare-and-set there.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from chidori.domain.errors import Unavailable


class QueueUnavailable(Unavailable):
    """The broker cannot be reached or refused the operation; retry later."""

    code = "queue_unavailable"


@dataclass(frozen=True)
class Message:
    job_id: int
    queue: str


@dataclass(frozen=True)
class Delivery:
    """A claimed message; `receipt` is what the implementation needs to ack or nack it."""

    message: Message
    receipt: object


class DispatchQueue(ABC):
    @abstractmethod
    def put(self, message: Message) -> None:
        """Database the message durably (returns once the broker confirmed it).
        Raises QueueUnavailable."""

    @abstractmethod
    def claim(self, timeout: float) -> Delivery | None:
        """The next message, waiting up to `timeout` seconds; None if there is none. A claimed
        message that is neither acked nor nacked is delivered again later (to any consumer),
        e.g. when this consumer dies. Raises QueueUnavailable."""

    @abstractmethod
    def ack(self, delivery: Delivery) -> None:
        """The message is handled: never deliver it again. Raises QueueUnavailable."""

    @abstractmethod
    def nack(self, delivery: Delivery, requeue: bool = True) -> None:
        """The message was not handled: deliver it again (requeue) or drop it."""

    @abstractmethod
    def depth(self) -> int:
        """How many messages wait (claimed ones excluded where the broker can tell)."""

    def claim_batch(self, max_messages: int, timeout: float) -> list[Delivery]:
        """Up to `max_messages` messages, waiting up to `timeout` seconds for the first.
        The default claims one; implementations that can claim many in one round trip do."""
        del max_messages
        delivery = self.claim(timeout)
        return [delivery] if delivery is not None else []

    def ack_batch(self, deliveries: list[Delivery]) -> None:
        """Ack each delivery (implementations may do it in one round trip)."""
        for delivery in deliveries:
            self.ack(delivery)

    def close(self) -> None:  # noqa: B027 - optional for implementations without resources
        """Release connections."""
