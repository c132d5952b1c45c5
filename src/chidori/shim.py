"""The driver shim: the process Chidori starts for each driver, between the server and the
driver itself. It makes sure a driver never outlives its right to run:

- when the server dies (even `kill -9`), the kernel sends the shim SIGTERM (PDEATHSIG), and
  the shim stops the driver's whole process group;
- when the server stops renewing its lease (frozen, partitioned from the database), the
  heartbeat file it touches after each renewal goes stale, and the shim stops the driver
  before the lease expires, so another replica never runs the same job at the same time.

    python -m chidori.shim --heartbeat FILE --stale-after SECONDS --grace SECONDS -- ARGV...

It exits as the driver did (the same code, or the same signal).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from types import FrameType

PR_SET_PDEATHSIG = 1
FENCED_EXIT_CODE = 75  # EX_TEMPFAIL: the shim stopped the driver; the job should run again


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the heartbeat still fences the driver
        pass


def _stop_group(pid: int, grace: float) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="chidori.shim")
    parser.add_argument("--heartbeat", required=True)
    parser.add_argument("--stale-after", type=float, required=True)
    parser.add_argument("--grace", type=float, default=5.0)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    parent = os.getppid()
    _die_with_parent()
    if os.getppid() != parent:  # the server died before PDEATHSIG was armed
        return 143
    child = subprocess.Popen(command, start_new_session=True)
    stopping = threading.Event()
    fenced = threading.Event()

    def stop(reason: str) -> None:
        if not stopping.is_set():
            stopping.set()
            print(f"chidori: stopping the driver: {reason}", file=sys.stderr, flush=True)
            threading.Thread(target=_stop_group, args=(child.pid, args.grace), daemon=True).start()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop(f"received {signal.Signals(signum).name}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def watch_heartbeat() -> None:
        while child.poll() is None and not stopping.is_set():
            try:
                age = time.time() - os.stat(args.heartbeat).st_mtime
            except OSError:
                age = float("inf")
            if age > args.stale_after:
                fenced.set()
                stop(f"the server has not renewed its lease for {age:.0f} s")
                return
            time.sleep(0.5)

    threading.Thread(target=watch_heartbeat, daemon=True).start()
    code = child.wait()
    if fenced.is_set():
        return FENCED_EXIT_CODE
    if code < 0:
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
