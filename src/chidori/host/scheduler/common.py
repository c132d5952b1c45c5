"""What every part of the scheduler shares: its options, the events that wake its loop, and
how this server records an attempt's end.

The parts (`leases`, `recovery`, `cancels`, `launcher`, `warm_reconciler`) never call one
another; the loop (`loop.Scheduler`) builds them and hands each the collaborators it uses.
Whatever a part must tell the loop (a slot was freed, something changed) goes through
`Signals`; whatever must end an attempt as this server goes through `Ends`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from chidori.domain.records import Ending, Outcome
from chidori.store import AttemptRepository

# Every part logs as the scheduler did before it was split (server logs name the logger).
SCHEDULER_LOGGER = "chidori.host.scheduler"


@dataclass(frozen=True)
class SchedulerOptions:
    server_id: str
    host: str
    work_dir: Path
    heartbeat_file: Path
    lease_seconds: float = 15.0
    lost_retry_limit: int = 3
    shutdown_mode: str = "requeue"  # or "wait": let running drivers finish first
    shutdown_grace_seconds: float = 30.0
    tick_seconds: float = 1.0
    min_step_interval: float = 0.02
    full_step_interval: float = 0.1
    # Tests only: pause this long (after writing `<home>/run/before-spawn-JOB`) between a
    # claim and its driver's start, so a test can freeze the server there.
    pause_before_spawn: float = 0.0


@dataclass
class Signals:
    """The loop's events. `wakeup`: something changed, run a step. `capacity_freed`: a slot
    was freed (a driver ended, a start failed, a warm driver went away): run it at once,
    without the pause that lets a burst of submissions gather. `stopped`: the scheduler is
    stopping (the loop and the lease thread end)."""

    wakeup: threading.Event = field(default_factory=threading.Event)
    capacity_freed: threading.Event = field(default_factory=threading.Event)
    stopped: threading.Event = field(default_factory=threading.Event)

    def wake(self) -> None:
        self.wakeup.set()

    def freed(self) -> None:
        """A reservation is free again: the loop admits the next job (recorded ends do not
        wake it by themselves)."""
        self.capacity_freed.set()
        self.wakeup.set()


class Ends:
    """Records an attempt's end as this server (the actor), with the options' limit on lost
    attempts. The store refuses an end for an attempt that already ended (fencing)."""

    def __init__(self, attempts: AttemptRepository, options: SchedulerOptions) -> None:
        self._attempts = attempts
        self._options = options

    def ending(self, job_id: int, attempt: int, outcome: Outcome) -> Ending:
        """The end to record with an admit step, in its transaction."""
        return Ending(
            job_id, attempt, outcome, self._options.server_id, self._options.lost_retry_limit
        )

    def finish(self, job_id: int, attempt: int, outcome: Outcome) -> None:
        """Record the end by itself."""
        self._attempts.finish_attempt(
            job_id, attempt, outcome, self._options.server_id, self._options.lost_retry_limit
        )
