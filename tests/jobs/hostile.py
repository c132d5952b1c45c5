"""Test job: what a hostile user would try from inside a job. Stdlib only.

Usage: hostile.py TARGETS_JSON [--spark]

TARGETS_JSON names what to go after: {"server_pid", "watchdog_pid", "home", "victim_dir",
"victim_pid", "event_log_dir"}. Prints one line per try, `PROBE <name> BLOCKED <why>` or
`PROBE <name> LEAKED <what>`, and whatever it could read, so a test can look for secrets in
the log. With --spark, runs the same tries in a Python worker too (prefix `worker:`).
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

Probe = Callable[[], str]


def _read(path: str) -> str:
    with open(path, "rb") as handle:
        return handle.read(4096).decode("utf-8", "replace")


def probes(targets: dict[str, object]) -> dict[str, Probe]:
    home = str(targets["home"])
    server = int(targets["server_pid"])  # type: ignore[call-overload]
    watchdog = int(targets["watchdog_pid"])  # type: ignore[call-overload]
    victim_pid = int(targets["victim_pid"])  # type: ignore[call-overload]
    victim_dir = str(targets["victim_dir"])
    events = str(targets["event_log_dir"])

    def ptrace() -> str:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.ptrace(16, server, None, None) == 0:  # PTRACE_ATTACH
            return "attached"
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))

    def kill(pid: int) -> Probe:
        def attempt() -> str:
            os.kill(pid, signal.SIGTERM)
            return f"signalled {pid}"

        return attempt

    def walk_up() -> str:
        found = []
        for parent in Path.cwd().parents:
            try:
                entries = os.listdir(parent)
            except OSError:
                continue
            for name in ("chidori.db", "secret.key", "admin.token"):
                if name in entries:
                    found.append(_read(os.path.join(parent, name))[:64])
        if found:
            return f"found {found}"
        raise PermissionError("nothing of the server's on the way up")

    def other_event_logs() -> str:
        names = os.listdir(events)
        return f"listed {names}"

    def env_secrets() -> str:
        tags = {"CHIDORI_JOB_ID", "CHIDORI_ATTEMPT", "CHIDORI_SERVER_ID", "CHIDORI_WARM_ID"}
        leaked = {
            k: v
            for k, v in os.environ.items()
            if (k.startswith("CHIDORI_") and k not in tags) or "DATABASE" in k
        }
        if leaked:
            return f"environment {leaked}"
        raise PermissionError("no secret in the environment")

    def processes() -> str:
        mine = os.getuid()
        others = []
        for name in os.listdir("/proc"):
            if name.isdigit() and name != "1":  # 1: the sandbox's own init
                try:
                    if os.stat(f"/proc/{name}").st_uid != mine:
                        others.append(name)
                except OSError:
                    continue
        if others:
            return f"sees processes of others: {others}"
        raise PermissionError("sees only its own processes")

    def home_listing() -> str:
        private = {"chidori.db", "secret.key", "admin.token", "logs", "artifacts", "run"}
        seen = set(os.listdir(home))
        if seen & private:
            return f"listed {sorted(seen)}"
        raise PermissionError(f"only its own mount points: {sorted(seen)}")

    def setuid_root() -> str:
        os.setuid(0)
        return "became root"

    def sudo_like() -> str:
        result = subprocess.run(
            ["su", "-c", "id"], capture_output=True, timeout=5, stdin=subprocess.DEVNULL
        )
        if result.returncode == 0:
            return f"su worked: {result.stdout!r}"
        raise PermissionError(f"su refused ({result.returncode})")

    def write(path: str) -> Probe:
        def attempt() -> str:
            with open(path, "a") as handle:
                handle.write("owned\n")
            return f"wrote {path}"

        return attempt

    return {
        "server-environ": lambda: _read(f"/proc/{server}/environ"),
        "server-mem": lambda: _read(f"/proc/{server}/mem"),
        "server-ptrace": ptrace,
        "signal-server": kill(server),
        "signal-watchdog": kill(watchdog),
        "signal-other-job": kill(victim_pid),
        "see-other-processes": processes,
        "home-db": lambda: _read(f"{home}/chidori.db"),
        "home-secret-key": lambda: _read(f"{home}/secret.key"),
        "home-listing": home_listing,
        "home-logs": lambda: str(os.listdir(f"{home}/logs")),
        "home-uploads": lambda: str(os.listdir(f"{home}/artifacts")),
        "home-write": write(f"{home}/owned.txt"),
        "db-write": write(f"{home}/chidori.db"),
        "walk-up": walk_up,
        "other-job-dir": lambda: str(os.listdir(victim_dir)),
        "other-job-log": lambda: _read(f"{home}/logs/1/attempt-1.log"),
        "other-event-logs": other_event_logs,
        "environment": env_secrets,
        "setuid-root": setuid_root,
        "su": sudo_like,
        "shadow": lambda: _read("/etc/shadow"),
        "write-system": write("/usr/local/owned.txt"),
    }


def run_probes(targets: dict[str, object], prefix: str = "") -> list[str]:
    lines = []
    for name, attempt in probes(targets).items():
        try:
            got = attempt()
        except Exception as exc:
            lines.append(f"PROBE {prefix}{name} BLOCKED {type(exc).__name__}: {exc}")
        else:
            lines.append(f"PROBE {prefix}{name} LEAKED {got!r}")
    return lines


def main(argv: list[str]) -> int:
    targets = json.loads(argv[0])
    print(f"hostile job runs as uid {os.getuid()} in {os.getcwd()}", flush=True)
    for line in run_probes(targets):
        print(line, flush=True)
    if "--spark" in argv:
        from pyspark.sql import SparkSession

        spark = SparkSession.builder.getOrCreate()
        lines = (
            spark.sparkContext.parallelize([0], 1)
            .flatMap(lambda _: run_probes(targets, "worker:"))
            .collect()
        )
        for line in lines:
            print(line, flush=True)
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
