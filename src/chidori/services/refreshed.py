"""A value read from the store on a hot path, kept for a while and read again by one caller."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Refreshed(Generic[T]):
    """`load()`'s result, kept for `max_age` seconds.

    When it is older than that, one caller reads it again while the others go on with the old
    value: every submission reads settings, and letting all of them miss at once sent dozens
    of identical reads to the database each second (and on PostgreSQL, more connections than
    the pool keeps). `forget()` makes the next `get()` wait for a fresh value: a change made
    through this process applies at once.
    """

    def __init__(
        self,
        load: Callable[[], T],
        max_age: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._max_age = max_age
        self._clock = clock
        self._entry: tuple[float, T] | None = None
        self._generation = 0  # bumped by forget(): a load begun before it is not kept
        self._loading = threading.Lock()

    def get(self) -> T:
        entry = self._entry
        if entry is not None:
            if self._is_fresh(entry):
                return entry[1]
            if not self._loading.acquire(blocking=False):
                return entry[1]  # another caller is reading it again
        else:
            self._loading.acquire()
        try:
            entry = self._entry
            if entry is not None and self._is_fresh(entry):
                return entry[1]  # loaded while this caller waited
            generation = self._generation
            value = self._load()
            if generation == self._generation:
                self._entry = (self._clock(), value)
            return value
        finally:
            self._loading.release()

    def fresh(self) -> bool:
        """Whether `get()` would answer now without loading."""
        entry = self._entry
        return entry is not None and self._is_fresh(entry)

    def _is_fresh(self, entry: tuple[float, T]) -> bool:
        return self._clock() - entry[0] < self._max_age

    def forget(self) -> None:
        self._generation += 1
        self._entry = None
