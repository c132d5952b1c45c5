"""Cancels: attempts on this server whose job was asked to cancel are stopped.

A running driver is stopped through the driver host, which reports its end CANCELLED when it
has exited (the loop records it, `loop.Scheduler._driver_exited`). An attempt still STARTING
whose driver does not run here (its start failed, or has not come yet) is ended CANCELLED
at once. The loop looks for cancel requests at most five times a second.

Not part of `recovery`: a cancel concerns only this server's drivers and is asked for by a
user; recovery ends other servers' attempts too, and cleans up after them.
"""

from __future__ import annotations

from collections.abc import Callable

from chidori.domain.records import Outcome
from chidori.domain.states import AttemptState
from chidori.host.driver_host import DriverHost
from chidori.host.scheduler.common import Ends, SchedulerOptions
from chidori.store import AttemptRepository


class Cancels:
    def __init__(
        self,
        attempts: AttemptRepository,
        drivers: DriverHost,
        ends: Ends,
        options: SchedulerOptions,
        skip: Callable[[int, int], bool] = lambda _job, _attempt: False,
    ) -> None:
        """`skip`: attempts whose cancels another part applies (remote runs)."""
        self._skip = skip
        self._attempts = attempts
        self._drivers = drivers
        self._ends = ends
        self._options = options

    def apply_cancels(self) -> None:
        for attempt in self._attempts.cancel_requested_attempts(self._options.server_id):
            if self._skip(attempt.job_id, attempt.number):
                continue
            if (
                not self._drivers.stop(
                    attempt.job_id, attempt.number, AttemptState.CANCELLED, "cancelled on request"
                )
                and attempt.state is AttemptState.STARTING
            ):
                self._ends.finish(
                    attempt.job_id,
                    attempt.number,
                    Outcome(AttemptState.CANCELLED, "cancelled on request"),
                )
