"""Keeping jobs away from the server and from each other.

Every process that runs user code (drivers of every kind, warm drivers, what they start) is
started through the sandbox launcher (`chidori/runtime/sandbox.py`) with:
- its own OS identity: a uid and gid taken from a configured range for one attempt (or one
  warm driver), with no supplementary groups and no_new_privs. A flock on
  `<lock_dir>/<uid>` held by the launcher for the sandbox's life keeps two live sandboxes on
  one machine (of any server) from sharing a uid;
- its own view of the file system: everything read-only; `CHIDORI_HOME`, the server user's
  home, the config file, `/run` and any configured path hidden under empty tmpfs; `/tmp`,
  `/var/tmp` and `/dev/shm` private; the runtime (Python, Spark, Java), the app roots and the
  event log folder bound back; the attempt's own folder writable;
- its own PID and IPC namespaces: it sees no other process, and every process it leaves is
  killed when its driver ends.

The server needs root (CAP_SYS_ADMIN for the namespaces and mounts, CAP_SETUID/CAP_SETGID,
CAP_CHOWN, CAP_DAC_OVERRIDE). Without it, `auto` mode accepts jobs from admins only.
"""

from __future__ import annotations

import fcntl
import logging
import marshal
import os
import pwd
import random
import site
import stat
import subprocess
import sys
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from chidori.backends.base import DriverCommand
from chidori.config import ConfigError, IsolationConfig
from chidori.domain.errors import ChidoriError, Unavailable

log = logging.getLogger(__name__)
LAUNCHER = str(Path(__file__).resolve().parent.parent / "runtime" / "sandbox.py")

# What a driver's environment may carry from the server's: nothing else (no tokens, keys,
# database or cloud credentials, unless an admin names them in isolation.pass_env).
_DRIVER_VARIABLES = frozenset(
    {
        "PATH", "LANG", "LANGUAGE", "TZ", "TERM", "JAVA_HOME", "SPARK_HOME", "SPARK_LOCAL_IP",
        "SPARK_LOCAL_HOSTNAME", "SPARK_CONF_DIR", "HADOOP_CONF_DIR", "YARN_CONF_DIR",
        "PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
        "OMP_NUM_THREADS", "MKL_NUM_THREADS", "PYARROW_IGNORE_TIMEZONE",
    }
)  # fmt: skip
_DRIVER_PREFIXES = ("LC_",)
_PRIVATE_TMP = ("/tmp", "/var/tmp", "/dev/shm")  # noqa: S108 - replaced, not used
_NAME_SERVICE = ("/run/systemd/resolve",)  # where /etc/resolv.conf may point


def driver_environment(environ: Mapping[str, str], pass_env: Iterable[str] = ()) -> dict[str, str]:
    """The part of the server's environment a driver gets: an allowlist, plus what an admin
    names in `pass_env` (a name, or a prefix ending in `*`)."""
    names = set(_DRIVER_VARIABLES)
    prefixes = list(_DRIVER_PREFIXES)
    for entry in pass_env:
        if entry.endswith("*"):
            prefixes.append(entry[:-1])
        else:
            names.add(entry)
    return {
        key: value
        for key, value in environ.items()
        if key in names or any(key.startswith(p) for p in prefixes if p)
    }


class IsolationUnavailable(Unavailable):
    code = "isolation_unavailable"
    status = 503


@dataclass
class JobIdentity:
    """A uid/gid held for one sandbox. The lock travels to the launcher (pass_fds); the
    server closes its own copy once the launcher runs (or the start failed)."""

    uid: int
    gid: int
    lock_fd: int
    closed: bool = False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self.lock_fd)


class IdentityPool:
    """Hands out uids from a range, none of which a live sandbox on this machine holds."""

    def __init__(self, first: int, last: int, lock_dir: Path) -> None:
        self._first, self._last = first, last
        self._lock_dir = lock_dir
        self._next = random.randint(first, last)  # servers on one machine start apart
        self._mutex = threading.Lock()

    def prepare(self) -> None:
        self._lock_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self._lock_dir, 0o700)

    def acquire(self) -> JobIdentity:
        size = self._last - self._first + 1
        with self._mutex:
            start = self._next
            for step in range(size):
                uid = self._first + (start - self._first + step) % size
                fd = os.open(
                    self._lock_dir / str(uid), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600
                )
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue
                self._next = uid + 1 if uid < self._last else self._first
                return JobIdentity(uid, uid, fd)
        raise IsolationUnavailable(
            f"every job identity in {self._first}-{self._last} is in use on this machine"
        )


@dataclass(frozen=True)
class Launch:
    """What the driver host starts: the command, wrapped in the sandbox when isolation is on."""

    argv: list[str]
    env: Mapping[str, str]
    cwd: Path
    identity: JobIdentity | None = None
    pass_fds: tuple[int, ...] = field(default=())

    def started(self) -> None:
        """The process runs (or could not start): the server lets go of its lock copy."""
        if self.identity is not None:
            self.identity.close()


def _closed_to_others(path: Path) -> bool:
    try:
        return not os.stat(path).st_mode & stat.S_IXOTH
    except OSError:
        return False


class Isolation:
    """Wraps driver commands in the sandbox (or passes them through when it is off)."""

    def __init__(
        self,
        config: IsolationConfig,
        home: Path,
        runtime_paths: Iterable[Path],
        app_roots: Iterable[Path],
        event_log_dir: Path | None,
        config_file: Path | None,
    ) -> None:
        self.config = config
        self._home = home.resolve()
        self._runtime = [Path(os.path.realpath(p)) for p in runtime_paths if os.path.exists(p)]
        self._app_roots = [Path(os.path.realpath(p)) for p in app_roots]
        self._event_log_dir = event_log_dir
        self._config_file = config_file
        self._pool = IdentityPool(*config.uid_range, config.lock_dir)
        self._identity_files = self._home / "run" / "identities"
        self._written_identities: set[int] = set()
        self.enabled = False
        self.status = "isolation is off (isolation: none): jobs run as the server's user"

    @property
    def admin_only(self) -> bool:
        """Jobs are accepted from admins only: isolation is wanted but cannot be had."""
        return self.config.mode == "auto" and not self.enabled

    def start(self) -> None:
        """Check that sandboxes can be built here; set `enabled` and `status`. Raises
        ConfigError in `sandbox` mode when they cannot."""
        os.chmod(self._home, 0o700)
        if self.config.mode == "none":
            return
        if self._event_log_dir is not None:
            self._event_log_dir.mkdir(parents=True, exist_ok=True)
        why = self._probe()
        if why is None:
            self.enabled = True
            self.status = (
                f"jobs run sandboxed, each as its own uid in {self.config.uid_range[0]}-"
                f"{self.config.uid_range[1]}"
            )
            if self._event_log_dir is not None:
                # Jobs write their event logs here but may not list or read each other's.
                os.chown(self._event_log_dir, 0, 0)
                os.chmod(self._event_log_dir, 0o1733)  # noqa: S103 - a drop box
            for root in self._app_roots:
                if _closed_to_others(root):
                    log.warning("app root %s is not readable by jobs (chmod o+rx it)", root)
            return
        if self.config.mode == "sandbox":
            raise ConfigError(f"isolation: sandbox was asked for, but {why}")
        self.status = f"jobs cannot be isolated ({why}); only admins may submit jobs"
        log.warning(
            "ISOLATION OFF: %s. Jobs would run as the server's user and could read its "
            "secrets, so only admins may submit. Run as root to isolate jobs, or set "
            "isolation: none for a single-tenant server.",
            why,
        )

    def _probe(self) -> str | None:
        if not sys.platform.startswith("linux"):
            return "sandboxes need Linux"
        if os.geteuid() != 0:
            return "the server does not run as root"
        try:
            self._pool.prepare()
            probe_dir = self._home / "run" / "probe"
            probe_dir.mkdir(parents=True, exist_ok=True)
            launch = self._wrap(
                DriverCommand(["/bin/sh", "-c", "exit 0"], {"PATH": "/usr/bin:/bin"}, probe_dir),
                [probe_dir],
                None,
            )
            try:
                result = subprocess.run(
                    launch.argv,
                    env=dict(launch.env),
                    cwd=launch.cwd,
                    pass_fds=launch.pass_fds,
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    timeout=30,
                    check=False,
                )
            finally:
                launch.started()
        except (OSError, ChidoriError, subprocess.SubprocessError) as exc:
            return f"a test sandbox could not be built: {exc}"
        if result.returncode != 0:
            detail = result.stderr.decode("utf-8", "replace").strip()[-500:]
            return f"a test sandbox failed (exit {result.returncode}): {detail}"
        return None

    def launch(
        self, command: DriverCommand, writable: Sequence[Path], user: str | None = None
    ) -> Launch:
        """How to start `command`: sandboxed, with `writable` folders (the first is its working
        folder) its own, when isolation is on; as it is otherwise."""
        if not self.enabled:
            return Launch(list(command.argv), command.env, command.cwd)
        return self._wrap(command, writable, user)

    def _wrap(self, command: DriverCommand, writable: Sequence[Path], user: str | None) -> Launch:
        identity = self._pool.acquire()
        try:
            for folder in writable:
                self._hand_to(folder, identity)
            work = writable[0]
            tmp = work / "tmp"
            tmp.mkdir(exist_ok=True)
            os.chown(tmp, identity.uid, identity.gid)
            passwd, group = self._identity_file_paths(identity)
            name = f"chidori-{identity.uid}"
            env = {
                **command.env,
                "HOME": str(work),
                "TMPDIR": str(tmp),
                "SPARK_LOCAL_DIRS": str(tmp),
                "USER": name,
                "LOGNAME": name,
                # Hadoop and Spark name the user from these (HDFS simple auth trusts them).
                "SPARK_USER": user or name,
                "HADOOP_USER_NAME": user or name,
            }
            mounts = self._mounts(writable)
            mounts += [["/etc/passwd", "ro", str(passwd)], ["/etc/group", "ro", str(group)]]
            spec = {
                "uid": identity.uid,
                "gid": identity.gid,
                "cwd": str(command.cwd),
                "argv": list(command.argv),
                "mounts": mounts,
                "network": self.config.network,
                "lock_fd": identity.lock_fd,
                "read_only_root": True,
            }
        except BaseException:
            identity.close()
            raise
        argv = [sys.executable, "-I", "-S", LAUNCHER, marshal.dumps(spec).hex()]
        return Launch(argv, env, command.cwd, identity, (identity.lock_fd,))

    def _hand_to(self, folder: Path, identity: JobIdentity) -> None:
        """Make `folder` the sandbox's: its owner, mode 0700, and the files the server wrote
        into it (its Spark conf) readable by it. Staged inputs (hard links to uploads) stay
        the server's."""
        folder.mkdir(parents=True, exist_ok=True)
        os.chown(folder, identity.uid, identity.gid)
        os.chmod(folder, 0o700)
        with os.scandir(folder) as entries:
            for entry in entries:
                info = entry.stat(follow_symlinks=False)
                if stat.S_ISREG(info.st_mode) and info.st_uid == 0 and info.st_nlink == 1:
                    os.chown(entry.path, identity.uid, identity.gid)

    def _identity_file_paths(self, identity: JobIdentity) -> tuple[Path, Path]:
        """/etc/passwd and /etc/group as the sandbox sees them: the machine's, plus its user
        (the JVM and Hadoop look the user up by uid)."""
        passwd = self._identity_files / f"{identity.uid}.passwd"
        group = self._identity_files / f"{identity.uid}.group"
        if identity.uid not in self._written_identities:
            self._identity_files.mkdir(parents=True, exist_ok=True)
            name = f"chidori-{identity.uid}"
            for path, source, line in (
                (passwd, "/etc/passwd", f"{name}:x:{identity.uid}:{identity.gid}::/nonexistent:\n"),
                (group, "/etc/group", f"{name}:x:{identity.gid}:\n"),
            ):  # fmt: skip
                try:
                    base = Path(source).read_text()
                except OSError:
                    base = ""
                if base and not base.endswith("\n"):
                    base += "\n"
                partial = path.with_suffix(".partial")
                partial.write_text(base + line)
                os.chmod(partial, 0o644)
                os.replace(partial, path)
            self._written_identities.add(identity.uid)
        return passwd, group

    def _mounts(self, writable: Sequence[Path]) -> list[list[str]]:
        hidden: dict[str, str] = {}
        home_dir = _server_home()
        for path in (self._home, home_dir, *self.config.hide):
            if path is not None and os.path.exists(path):
                hidden[os.path.realpath(path)] = "hide"
        if self._config_file is not None and self._config_file.exists():
            hidden[str(self._config_file.resolve())] = "hide"
        if os.path.isdir("/run"):
            hidden["/run"] = "hide"
        for private in _PRIVATE_TMP:
            if os.path.isdir(private):
                hidden[private] = "tmp"
        exposed: dict[str, str] = {}
        for path in (*self._runtime, *self.config.expose, *self._app_roots):
            exposed[str(path)] = "ro"
        for service in _NAME_SERVICE:
            if os.path.isdir(service):
                exposed[service] = "ro"
        if self._event_log_dir is not None:
            exposed[str(self._event_log_dir)] = "rw"
        for path in self.config.shared:
            exposed[str(path)] = "rw"
        for folder in writable:
            exposed[os.path.realpath(folder)] = "rw"
        # A closed folder (no o+x) on the way to an exposed path is replaced by an empty one.
        for path_text in list(exposed):
            for parent in Path(path_text).parents:
                text = str(parent)
                if text == "/" or text in exposed or text in hidden:
                    continue
                if _closed_to_others(parent):
                    hidden[text] = "hide"
        mounts = [[p, kind] for p, kind in hidden.items() if p not in exposed]
        mounts += [[p, kind] for p, kind in exposed.items()]
        return mounts


def _server_home() -> Path | None:
    try:
        return Path(pwd.getpwuid(os.geteuid()).pw_dir)
    except KeyError:
        return None


def runtime_paths(extra: Iterable[str | None] = ()) -> list[Path]:
    """What every driver needs to read: this Python (and its base installation), its
    site-packages, Chidori's runtime scripts, and the given paths (Spark, Java, pythons)."""
    paths = [Path(sys.prefix), Path(sys.base_prefix), Path(sys.exec_prefix)]
    paths += [Path(p) for p in site.getsitepackages()]
    paths.append(Path(__file__).resolve().parent.parent / "runtime")
    for item in extra:
        if item:
            paths.append(Path(item))
    return paths
