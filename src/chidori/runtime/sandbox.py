"""The sandbox launcher: runs one job's driver under its own OS identity, in its own view of
the file system, its own PID and IPC namespaces (and, if asked, its own network).

    python -I -S chidori/runtime/sandbox.py SPEC

(SPEC: the launch spec as `marshal` data, in hex; the server runs the same interpreter.)

Started by the server (as root) for every process that runs user code. Stdlib only, no
imports from Chidori: it must start fast and trust nothing but its argument.

What it does, in order:
1. unshare(mount, PID, IPC [, network]) and make every mount private to this namespace;
2. builds the view: every existing mount read-only; `hide` paths covered by an empty tmpfs
   (or /dev/null for a file); `ro`/`rw` paths bound back at the same place (sources opened
   before anything is hidden, so a path under a hidden folder can still be exposed); `tmp`
   paths get a private, writable tmpfs;
3. forks the namespace's init (PID 1): it mounts a /proc that shows only the sandbox, forks
   the job's process, which drops to the attempt's uid and gid (no supplementary groups,
   no_new_privs, so no setuid binary gives anything back) and execs the command;
4. waits. Signals it gets (SIGTERM from a cancel, a timeout, the watchdog) go to init, which
   passes them on to the job. When the job's process exits, init exits and the kernel kills
   whatever the job left in the namespace, `setsid` or not. If this launcher is killed, init
   gets SIGKILL (PDEATHSIG) and the same happens.

The job's exit status is passed back through a pipe and reproduced: an exit code, or death by
the same signal.
"""

from __future__ import annotations

# The C module: `signal` would import enum, milliseconds at every job's start.
import _signal as signal  # type: ignore[import-not-found]
import ctypes
import marshal
import os
import stat
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38
# statvfs flags with the same values as the MS_* flags a bind remount must keep.
_KEPT_FLAGS = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME
_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1)
# Mounts left as they are: /proc is replaced, /dev must stay writable (/dev/null), /sys is
# read-only to the job's uid anyway.
_KEEP_WRITABLE = ("/proc", "/dev", "/sys")

_libc = ctypes.CDLL(None, use_errno=True)


class SandboxError(Exception):
    pass


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise SandboxError(f"{what}: {os.strerror(errno)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    _check(
        _libc.mount(
            source.encode() if source is not None else None,
            target.encode(),
            fstype.encode() if fstype is not None else None,
            ctypes.c_ulong(flags),
            data.encode() if data else None,
        ),
        f"mount {target}",
    )


def _mount_points() -> list[str]:
    points = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as handle:
        for line in handle:
            raw = line.split(" ")[4]
            # Octal escapes for space, tab, newline and backslash.
            points.append(
                raw.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n")
                .replace("\\134", "\\")
            )  # fmt: skip
    return points


def _under(path: str, roots: tuple[str, ...]) -> bool:
    return any(path == root or path.startswith(root + "/") for root in roots)


def _remount(path: str, read_only: bool) -> None:
    kept = os.statvfs(path).f_flag & _KEPT_FLAGS & ~MS_RDONLY
    flags = MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NODEV | kept | (MS_RDONLY if read_only else 0)
    _mount(None, path, None, flags)


def _make_mount_point(path: str, directory: bool) -> None:
    if os.path.lexists(path):
        return
    os.makedirs(os.path.dirname(path) or "/", mode=0o755, exist_ok=True)
    if directory:
        os.mkdir(path, 0o755)
    else:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))


def build_view(mounts: list[list[str]], read_only_root: bool) -> None:
    """Apply `mounts` ([path, kind] or [path, kind, source], kind hide | tmp | ro | rw),
    shallowest first."""
    sources: dict[str, int] = {}
    for entry in mounts:
        if entry[1] in ("ro", "rw"):  # [path, kind, source]: bound from source (default: path)
            source = entry[2] if len(entry) > 2 else entry[0]
            sources[entry[0]] = os.open(source, os.O_PATH | os.O_CLOEXEC)
    if read_only_root:
        for point in _mount_points():
            if not _under(point, _KEEP_WRITABLE):
                try:
                    _remount(point, read_only=True)
                except (SandboxError, OSError):
                    if point == "/":
                        raise
    for path, kind, *_ in sorted(mounts, key=lambda m: (m[0].count("/"), m[0])):
        if kind in ("ro", "rw"):
            fd = sources[path]
            _make_mount_point(path, stat.S_ISDIR(os.fstat(fd).st_mode))
            _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND)
            _remount(path, read_only=kind == "ro")
        elif kind == "hide" and os.path.exists(path) and not os.path.isdir(path):
            _mount("/dev/null", path, None, MS_BIND)
        else:
            _make_mount_point(path, True)
            mode = "1777" if kind == "tmp" else "755"
            size = "" if kind == "tmp" else ",size=1m"
            _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, f"mode={mode}{size}")
    for fd in sources.values():
        os.close(fd)


def _loopback_up() -> None:
    import fcntl
    import socket
    import struct

    siocsifflags, iff_up_loopback_running = 0x8914, 0x1 | 0x8 | 0x40
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        fcntl.ioctl(sock, siocsifflags, struct.pack("16sH14x", b"lo", iff_up_loopback_running))


def _drop_and_exec(spec: dict[str, object]) -> None:
    uid, gid = int(spec["uid"]), int(spec["gid"])  # type: ignore[call-overload]
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    for sig in _FORWARDED:
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    os.umask(0o077)
    os.chdir(str(spec["cwd"]))
    argv = [str(a) for a in spec["argv"]]  # type: ignore[attr-defined]
    os.execv(argv[0], argv)  # noqa: S606 - the job's own command


def _reader_gone(write_fd: int) -> bool:
    import select

    poller = select.poll()
    poller.register(write_fd, select.POLLERR)
    return bool(poller.poll(0))


def _init(spec: dict[str, object], status_fd: int) -> None:
    """PID 1 of the sandbox: never returns."""
    try:
        _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "pdeathsig")
        if _reader_gone(status_fd):  # the launcher died before PDEATHSIG was armed
            os._exit(1)
        _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        if spec.get("network") == "none":
            _loopback_up()
        child = os.fork()
        if child == 0:
            try:
                _drop_and_exec(spec)
            except BaseException as exc:
                os.write(2, f"chidori sandbox: cannot start the job: {exc}\n".encode())
            os._exit(127)
    except BaseException as exc:
        os.write(2, f"chidori sandbox: {exc}\n".encode())
        os._exit(126)

    def forward(signum: int, _frame: object) -> None:
        try:  # noqa: SIM105 - no contextlib: keep imports to the minimum
            os.kill(child, signum)
        except ProcessLookupError:
            pass

    for sig in _FORWARDED:
        signal.signal(sig, forward)
    while True:
        pid, status = os.waitpid(-1, 0)
        if pid == child:
            os.write(status_fd, status.to_bytes(4, "little"))
            os._exit(0)  # the kernel now ends everything else in the namespace


def run(spec: dict[str, object]) -> int:
    lock_fd = spec.get("lock_fd")
    if isinstance(lock_fd, int):
        os.set_inheritable(lock_fd, False)  # held by this launcher and init, not by the job
    flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC
    if spec.get("network") == "none":
        flags |= CLONE_NEWNET
    _check(_libc.unshare(flags), "unshare")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    build_view(spec["mounts"], bool(spec.get("read_only_root", True)))  # type: ignore[arg-type]
    status_read, status_write = os.pipe()
    init = os.fork()
    if init == 0:
        os.close(status_read)
        _init(spec, status_write)
    os.close(status_write)

    def forward(signum: int, _frame: object) -> None:
        try:  # noqa: SIM105
            os.kill(init, signum)
        except ProcessLookupError:
            pass

    for sig in _FORWARDED:
        signal.signal(sig, forward)
    _, init_status = os.waitpid(init, 0)
    data = os.read(status_read, 4)
    if len(data) != 4:  # init failed before the job ran
        return os.waitstatus_to_exitcode(init_status) if os.WIFEXITED(init_status) else 126
    status = int.from_bytes(data, "little")
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [sig])
        os.kill(os.getpid(), sig)
        return 128 + sig
    return os.waitstatus_to_exitcode(status)


def main(argv: list[str]) -> int:
    try:
        # Not json: importing it (and re) took longer than the rest of the start-up.
        return run(marshal.loads(bytes.fromhex(argv[0])))  # noqa: S302 - the server's own
    except (SandboxError, OSError, ValueError, KeyError, EOFError, TypeError) as exc:
        os.write(2, f"chidori sandbox: cannot build the sandbox: {exc}\n".encode())
        return 126


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
