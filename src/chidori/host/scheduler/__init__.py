"""The scheduler of one replica, one module per concern.

- `loop.py`: `Scheduler`, the composition: builds the parts, runs the loop and its step,
  the admit step (and the hand-off of its claims to the launcher), the driver exits, stop;
- `leases.py`: the lease renewal thread, fencing of drivers no longer ours, the watchdog;
- `recovery.py`: attempts whose lease expired, orphans at start: LOST, and their clean-up;
- `cancels.py`: cancel requests for the drivers this server runs;
- `launcher.py`: a claim becomes a driver (cold, or a warm hand-over); its start recorded;
- `warm_reconciler.py`: starting warm drivers, keeping them in line with the store;
- `common.py`: the options, the loop's events, recording an attempt's end.
"""

from chidori.host.scheduler.common import SchedulerOptions
from chidori.host.scheduler.loop import Scheduler

__all__ = ["Scheduler", "SchedulerOptions"]
