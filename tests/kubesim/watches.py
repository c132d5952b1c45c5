"""Watch plumbing of the fake API server: the change history, filters and subscribers.

A subscriber sees an event when an object it selects (namespace, label selector, field
selector) changes, with the documented transitions: an object that stops matching arrives as
DELETED, one that starts matching as ADDED. `Watch` is the thread-safe iterator that tests and
the simulated kubelet and scheduler consume; the HTTP layer subscribes with its own delivery
function that hands events to its event loop.
"""

from __future__ import annotations

import copy
import queue
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from tests.kubesim.resources import Resource
from tests.kubesim.selectors import FieldSelector, LabelSelector, field_value

Obj = dict[str, Any]


@dataclass(frozen=True)
class Change:
    """One write, as the history keeps it."""

    rv: int
    type: str
    resource: Resource
    object: Obj
    old: Obj | None


@dataclass
class Subscription:
    resource: Resource
    namespace: str | None
    labels: LabelSelector
    fields: FieldSelector
    deliver: Callable[[Obj | None], None]

    def matches(self, obj: Obj | None) -> bool:
        if obj is None:
            return False
        meta = obj.get("metadata", {})
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return False
        return self.labels.matches(meta.get("labels")) and self.fields.matches(obj, field_value)

    def event_for(self, change: Change) -> Obj | None:
        new, old = self.matches(change.object), self.matches(change.old)
        if change.type == "DELETED":
            return {"type": "DELETED", "object": change.object} if new else None
        if new:
            return {"type": "MODIFIED" if old else "ADDED", "object": change.object}
        return {"type": "DELETED", "object": change.object} if old else None


class Watch:
    """A thread-safe iterator of watch events (`{"type": ..., "object": ...}` dicts)."""

    def __init__(self, unsubscribe: Callable[[Subscription], None]) -> None:
        self._unsubscribe = unsubscribe
        self._queue: queue.Queue[Obj | None] = queue.Queue()
        self.subscription: Subscription | None = None
        self.closed = False

    def deliver(self, event: Obj | None) -> None:
        self._queue.put(event)

    def get(self, timeout: float | None = None) -> Obj | None:
        """The next event, or None after `timeout` seconds or once the watch is closed."""
        if self.closed and self._queue.empty():
            return None
        try:
            event = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if event is None:
            self.closed = True
            return None
        return copy.deepcopy(event)

    def __iter__(self) -> Iterator[Obj]:
        while (event := self.get()) is not None:
            yield event

    def close(self) -> None:
        if self.subscription is not None:
            self._unsubscribe(self.subscription)
            self.subscription = None
        self._queue.put(None)

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
