"""The driver watchdog: one small process per server that makes sure no driver outlives its
server's right to run it.

- When the server dies (even `kill -9`), the kernel sends the watchdog SIGTERM (PDEATHSIG):
  it stops every process tagged with the server's id.
- When the server stops renewing its lease (frozen, cut off from the database), the heartbeat
  file it touches after each renewal goes stale: the watchdog marks each running attempt as
  fenced (a file in FENCE_DIR) and stops its processes, before the lease can expire and
  another replica can start the job again.
- SIGUSR1 ends it quietly (the server is shutting down and stopped its drivers itself).

    python -I -S chidori/host/watchdog.py SERVER_ID HEARTBEAT_FILE STALE_AFTER GRACE FENCE_DIR

One process per server, not per job, and almost no imports: it costs a job nothing.
"""

from __future__ import annotations

import os
import signal
import sys
import time

PR_SET_PDEATHSIG = 1
CHECK_INTERVAL = 0.25


def _die_with_parent() -> None:
    try:
        import ctypes

        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError, ImportError):  # not Linux: the heartbeat still fences
        pass


def tagged(server_id: str) -> dict[int, tuple[str, str]]:
    """pid -> (job id, attempt) of every process tagged with this server's id."""
    wanted = f"CHIDORI_SERVER_ID={server_id}".encode()
    found: dict[int, tuple[str, str]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as handle:
                environ = handle.read().split(b"\0")
        except OSError:
            continue
        if wanted in environ:
            values = dict(item.split(b"=", 1) for item in environ if b"=" in item)
            found[int(name)] = (
                values.get(b"CHIDORI_JOB_ID", b"?").decode(),
                values.get(b"CHIDORI_ATTEMPT", b"?").decode(),
            )
    return found


def stop_all(server_id: str, grace: float, fence_dir: str | None) -> None:
    processes = tagged(server_id)
    if fence_dir is not None:
        os.makedirs(fence_dir, exist_ok=True)
        for job_id, attempt in set(processes.values()):
            with open(os.path.join(fence_dir, f"{job_id}-{attempt}"), "w"):
                pass
    for pid in processes:
        try:  # noqa: SIM105 - no contextlib: keep imports to the minimum
            os.kill(pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and tagged(server_id):
        time.sleep(0.1)
    for pid in tagged(server_id):
        try:  # noqa: SIM105
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def main(argv: list[str]) -> int:
    server_id, heartbeat, stale_after_text, grace_text, fence_dir = argv
    stale_after, grace = float(stale_after_text), float(grace_text)
    parent = os.getppid()
    _die_with_parent()
    state = {"quit": False, "server_gone": os.getppid() != parent}

    def on_server_gone(_signum: int, _frame: object) -> None:
        state["server_gone"] = True

    def on_quit(_signum: int, _frame: object) -> None:
        state["quit"] = True

    signal.signal(signal.SIGTERM, on_server_gone)
    signal.signal(signal.SIGINT, on_server_gone)
    signal.signal(signal.SIGUSR1, on_quit)
    fenced_at = 0.0
    while not state["quit"]:
        if state["server_gone"] or os.getppid() != parent:
            stop_all(server_id, grace, None)
            return 0
        try:
            beat = os.stat(heartbeat).st_mtime
        except OSError:
            beat = 0.0
        if time.time() - beat > stale_after and beat != fenced_at:
            os.write(2, b"chidori watchdog: leases not renewed; stopping this server's drivers\n")
            stop_all(server_id, grace, fence_dir)
            fenced_at = beat  # once per stale period; drivers started later are not touched
        time.sleep(CHECK_INTERVAL)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
