"""Submission rate limits per caller (a token bucket each) and the throttle on failed
sign-ins per client address, in this process."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from chidori.domain.errors import RateLimited


class RateLimiter:
    def __init__(
        self, rate_per_second: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate = rate_per_second
        self._burst = float(burst)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> None:
        """Spend one request for `key`, or raise RateLimited saying when to retry."""
        if self._rate <= 0:
            return
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (self._burst, now))
            tokens = min(self._burst, tokens + (now - last) * self._rate)
            if tokens < 1:
                self._buckets[key] = (tokens, now)
                raise RateLimited(
                    f"too many submissions: at most {self._rate:g} per second "
                    f"(bursts of {self._burst:g})",
                    retry_after=(1 - tokens) / self._rate,
                )
            self._buckets[key] = (tokens - 1, now)


class FailureThrottle:
    """Failed sign-ins per client (a wrong token): after `limit` of them within
    `window_seconds`, the client is refused until the oldest one ages out. Successes are not
    counted and cost one dictionary look-up. In this process; `limit` 0 turns it off."""

    def __init__(
        self,
        limit: int,
        window_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = 100_000,
    ) -> None:
        self._limit = limit
        self._window = window_seconds
        self._clock = clock
        self._max_clients = max_clients
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, client: str | None) -> None:
        """RateLimited, saying when to retry, if `client` failed too often lately."""
        if self._limit <= 0 or client is None:
            return
        with self._lock:
            recent = self._recent(client, self._clock())
            if recent is None or len(recent) < self._limit:
                return
            retry_after = recent[0] + self._window - self._clock()
        raise RateLimited(
            f"too many failed sign-ins from {client}: at most {self._limit} "
            f"in {self._window:g} s; retry later",
            retry_after=max(retry_after, 1.0),
        )

    def failed(self, client: str | None) -> None:
        """Count one failure of `client`."""
        if self._limit <= 0 or client is None:
            return
        now = self._clock()
        with self._lock:
            recent = self._recent(client, now)
            if recent is None:
                if len(self._failures) >= self._max_clients:
                    self._forget_quiet(now)
                recent = self._failures.setdefault(client, deque())
            recent.append(now)
            while len(recent) > self._limit:
                recent.popleft()

    def _recent(self, client: str, now: float) -> deque[float] | None:
        """The client's failures still inside the window (older ones dropped)."""
        recent = self._failures.get(client)
        if recent is None:
            return None
        while recent and recent[0] <= now - self._window:
            recent.popleft()
        if not recent:
            del self._failures[client]
            return None
        return recent

    def _forget_quiet(self, now: float) -> None:
        # Bounded memory under many addresses: drop who has aged out, else start over.
        for client in list(self._failures):
            self._recent(client, now)
        if len(self._failures) >= self._max_clients:
            self._failures.clear()
