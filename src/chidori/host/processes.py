"""Finding and stopping the processes of one job attempt, by the tag in their environment."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

PROC = Path("/proc")


def _other_processes() -> Iterator[Path]:
    """/proc entries of every process but this one (none where there is no /proc)."""
    if not PROC.is_dir():
        return
    me = os.getpid()
    for entry in PROC.iterdir():
        if entry.name.isdigit() and int(entry.name) != me:
            yield entry


def _environments() -> Iterator[tuple[int, bytes]]:
    """(pid, environment block) of every other process whose environment we may read."""
    for entry in _other_processes():
        try:
            yield int(entry.name), (entry / "environ").read_bytes()
        except OSError:
            continue


def tagged_processes(
    job_id: int, attempt: int | None = None, server_id: str | None = None
) -> list[int]:
    """PIDs whose environment carries CHIDORI_JOB_ID=job_id (and CHIDORI_ATTEMPT=attempt, and
    CHIDORI_SERVER_ID=server_id: job ids are per database, and servers with separate
    databases may share a machine).

    Works on Linux (/proc); elsewhere returns []. Processes we may not read are skipped.
    """
    wanted = f"CHIDORI_JOB_ID={job_id}".encode()
    wanted_attempt = f"CHIDORI_ATTEMPT={attempt}".encode() if attempt is not None else None
    wanted_server = f"CHIDORI_SERVER_ID={server_id}".encode() if server_id is not None else None
    found = []
    for pid, block in _environments():
        environ = block.split(b"\0")
        if (
            wanted in environ
            and (wanted_attempt is None or wanted_attempt in environ)
            and (wanted_server is None or wanted_server in environ)
        ):
            found.append(pid)
    return found


def server_tagged_processes(server_id: str) -> list[tuple[int, int, int]]:
    """(pid, job id, attempt) of every process that carries this server's tag and a job's:
    one pass over /proc."""
    wanted_server = f"CHIDORI_SERVER_ID={server_id}".encode()
    found = []
    for pid, environ in _environments():
        if wanted_server not in environ:
            continue
        tags = dict(
            item.split(b"=", 1) for item in environ.split(b"\0") if item.startswith(b"CHIDORI_")
        )
        if tags.get(b"CHIDORI_SERVER_ID") != server_id.encode():
            continue
        try:
            found.append((pid, int(tags[b"CHIDORI_JOB_ID"]), int(tags[b"CHIDORI_ATTEMPT"])))
        except (KeyError, ValueError):
            continue
    return found


def group_alive(group_leader: int) -> bool:
    """Whether any process is left in the process group `group_leader` started."""
    try:
        os.killpg(group_leader, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def stop_attempt_processes(
    job_id: int,
    attempt: int,
    group_leader: int | None,
    grace_seconds: float,
    server_id: str | None = None,
) -> None:
    """SIGTERM the driver's process group and every tagged process, SIGKILL what is left
    after `grace_seconds`. Returns once nothing tagged is alive (or after a last SIGKILL)."""
    if group_leader is not None:
        _signal_group(group_leader, signal.SIGTERM)
    for pid in tagged_processes(job_id, attempt, server_id):
        _send(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline:
        leader_alive = group_leader is not None and is_alive(group_leader)
        tagged = tagged_processes(job_id, attempt, server_id)
        if not leader_alive and not [p for p in tagged if is_alive(p)]:
            return
        time.sleep(0.1)
    if group_leader is not None:
        _signal_group(group_leader, signal.SIGKILL)
    for pid in tagged_processes(job_id, attempt, server_id):
        _send(pid, signal.SIGKILL)


def _send(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _session_members(leader: int) -> list[int]:
    """Live processes of the session `leader` started (start_new_session=True): its process
    group and the groups its children made (PySpark's Python workers have their own)."""
    members = []
    for entry in _other_processes():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 3 and fields[3] == str(leader) and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def stop_group(group_leader: int, grace_seconds: float) -> None:
    """SIGTERM a process group (a driver started in its own session), SIGKILL what is left
    after `grace_seconds`."""
    _signal_group(group_leader, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline:
        if not _session_members(group_leader):
            return
        time.sleep(0.1)
    _signal_group(group_leader, signal.SIGKILL)
    for pid in _session_members(group_leader):
        _send(pid, signal.SIGKILL)


def session_rss(leader: int) -> int:
    """Resident memory, in bytes, of every process in the session `leader` started."""
    page = os.sysconf("SC_PAGE_SIZE")
    total = 0
    for pid in _session_members(leader):
        try:
            total += int((PROC / str(pid) / "statm").read_text().split()[1]) * page
        except (OSError, IndexError, ValueError):
            continue
    return total
