"""Wake asyncio waiters (long polls, log follows) when a job changes in this process."""

from __future__ import annotations

import asyncio
import contextlib


class ChangeNotifier:
    """A broadcast signal: `notify` may be called from any thread; `wait` from the loop."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None
        # How many are waiting: with nobody, a change does not wake the event loop (a busy
        # scheduler records thousands of changes a minute).
        self._waiting = 0

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._event = asyncio.Event()

    def notify(self, _job_id: int | None = None) -> None:
        loop = self._loop
        if self._waiting and loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._fire)

    def _fire(self) -> None:
        if self._event is not None:
            self._event.set()
            self._event = asyncio.Event()

    async def wait(self, timeout: float) -> None:
        """Return after the next change, or after `timeout` seconds (changes made by other
        replicas are only seen by polling, so callers re-check the store either way)."""
        event = self._event
        if event is None:
            await asyncio.sleep(timeout)
            return
        self._waiting += 1
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), timeout)
        finally:
            self._waiting -= 1
