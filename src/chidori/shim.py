"""The driver shim: the process Chidori starts for each driver, between the server and the
driver itself. It makes sure a driver never outlives its right to run:

- when the server dies (even `kill -9`), the kernel sends the shim SIGTERM (PDEATHSIG), and
  the shim stops the driver's whole process group;
- when the server stops renewing its lease (frozen, partitioned from the database), the
  heartbeat file it touches after each renewal goes stale, and the shim stops the driver
  before the lease expires, so another replica never runs the same job at the same time.

    python chidori/shim.py HEARTBEAT_FILE STALE_AFTER_SECONDS GRACE_SECONDS ARGV...

It exits as the driver did (the same code, or the same signal), or with FENCED_EXIT_CODE when
it stopped the driver because the lease went stale. It runs for every job, so it imports
almost nothing (about 20 ms less start-up than argparse + subprocess + threading).
"""

from __future__ import annotations

import os
import signal
import sys
import time

PR_SET_PDEATHSIG = 1
FENCED_EXIT_CODE = 75  # EX_TEMPFAIL: the shim stopped the driver; the job should run again
CHECK_INTERVAL = 0.5


def _die_with_parent() -> None:
    try:
        import ctypes

        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError, ImportError):  # not Linux: the heartbeat still fences
        pass


class _Shim:
    def __init__(self, heartbeat: str, stale_after: float, grace: float) -> None:
        self.heartbeat = heartbeat
        self.stale_after = stale_after
        self.grace = grace
        self.child = 0
        self.kill_at: float | None = None
        self.fenced = False

    def stop(self, reason: str) -> None:
        if self.kill_at is not None:
            return
        os.write(2, f"chidori: stopping the driver: {reason}\n".encode())
        self.kill_at = time.monotonic() + self.grace
        self._signal_group(signal.SIGTERM)

    def _signal_group(self, sig: signal.Signals) -> None:
        # No contextlib here: the shim keeps its imports to the bare minimum.
        try:  # noqa: SIM105
            os.killpg(self.child, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def on_signal(self, signum: int, _frame: object) -> None:
        self.stop(f"received {signal.Signals(signum).name}")

    def on_tick(self, _signum: int, _frame: object) -> None:
        if self.kill_at is not None:
            if time.monotonic() >= self.kill_at:
                self._signal_group(signal.SIGKILL)
            return
        try:
            age = time.time() - os.stat(self.heartbeat).st_mtime
        except OSError:
            age = float("inf")
        if age > self.stale_after:
            self.fenced = True
            self.stop(f"the server has not renewed its lease for {age:.0f} s")


def main(argv: list[str]) -> int:
    heartbeat, stale_after, grace, *command = argv
    parent = os.getppid()
    _die_with_parent()
    if os.getppid() != parent:  # the server died before PDEATHSIG was armed
        return 143
    shim = _Shim(heartbeat, float(stale_after), float(grace))
    signal.signal(signal.SIGTERM, shim.on_signal)
    signal.signal(signal.SIGINT, shim.on_signal)
    signal.signal(signal.SIGALRM, shim.on_tick)
    shim.child = os.posix_spawnp(command[0], command, os.environ, setsid=True)
    signal.setitimer(signal.ITIMER_REAL, CHECK_INTERVAL, CHECK_INTERVAL)
    _, status = os.waitpid(shim.child, 0)  # signal handlers run while it waits
    signal.setitimer(signal.ITIMER_REAL, 0, 0)
    if shim.kill_at is not None:
        shim._signal_group(signal.SIGKILL)  # what the driver started may still linger
    if shim.fenced:
        return FENCED_EXIT_CODE
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig != signal.SIGKILL:  # SIGKILL cannot be caught, so it needs no reset
            signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
