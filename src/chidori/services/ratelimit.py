"""Submission rate limits per caller: a token bucket each, in this process."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from chidori.errors import RateLimited


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
