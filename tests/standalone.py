"""Test helper: a throwaway Spark standalone cluster (one Master, one Worker) on loopback.

Usage::

    with standalone_cluster(tmp_path) as cluster:
        ...  # spark-submit --master cluster.master_url ...

Both daemons come from the installed pyspark package (``spark-class``), run in their own
process groups with their logs in ``work_dir``, and are killed (SIGTERM, then SIGKILL) on exit.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from chidori.backends.spark_home import find_spark_home

READY_TIMEOUT_S = 60.0
STOP_GRACE_S = 5.0
LOG_TAIL_CHARS = 4000


@dataclass(frozen=True)
class StandaloneCluster:
    master_url: str
    ui_url: str


class ClusterStartError(RuntimeError):
    """The standalone cluster did not become ready in time."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cluster_state(ui_url: str) -> dict[str, Any] | None:
    """The master's ``/json/`` state, or None while it does not answer."""
    try:
        with urllib.request.urlopen(f"{ui_url}/json/", timeout=2) as resp:
            state: dict[str, Any] = json.load(resp)
            return state
    except (OSError, urllib.error.URLError, ValueError):
        return None


def alive_workers(state: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    if state is None:
        return []
    return [w for w in state.get("workers", []) if w.get("state") == "ALIVE"]


def _tail(path: Path) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return text[-LOG_TAIL_CHARS:]


def _start(argv: list[str], log_path: Path, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    log: IO[bytes] = log_path.open("wb")
    try:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env),
            start_new_session=True,  # own process group: killpg reaches the JVM too
        )
    finally:
        log.close()  # the child holds its own copy


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@contextlib.contextmanager
def _cluster(work_dir: Path) -> Iterator[StandaloneCluster]:
    spark_home = find_spark_home(os.environ)
    spark_class = str(spark_home / "bin" / "spark-class")
    work_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["SPARK_HOME"] = str(spark_home)
    env["SPARK_LOCAL_IP"] = "127.0.0.1"
    env.setdefault("SPARK_LOG_DIR", str(work_dir))
    env.setdefault("SPARK_PID_DIR", str(work_dir))

    port, webui_port, worker_webui_port = free_port(), free_port(), free_port()
    master_url = f"spark://127.0.0.1:{port}"
    ui_url = f"http://127.0.0.1:{webui_port}"
    master_log = work_dir / "master.log"
    worker_log = work_dir / "worker.log"
    worker_dir = work_dir / "worker"
    worker_dir.mkdir(exist_ok=True)

    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(
            _start(
                [
                    spark_class,
                    "org.apache.spark.deploy.master.Master",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--webui-port",
                    str(webui_port),
                ],
                master_log,
                env,
            )
        )
        procs.append(
            _start(
                [
                    spark_class,
                    "org.apache.spark.deploy.worker.Worker",
                    "--host",
                    "127.0.0.1",
                    "--cores",
                    "2",
                    "--memory",
                    "2g",
                    "--webui-port",
                    str(worker_webui_port),
                    "--work-dir",
                    str(worker_dir),
                    master_url,
                ],
                worker_log,
                env,
            )
        )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not alive_workers(cluster_state(ui_url)):
            dead = [p for p in procs if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                why = (
                    f"a daemon exited with code {dead[0].returncode}"
                    if dead
                    else f"no ALIVE worker after {READY_TIMEOUT_S:.0f} s"
                )
                raise ClusterStartError(
                    f"standalone cluster at {master_url} not ready: {why}\n"
                    f"--- master log ({master_log}) ---\n{_tail(master_log)}\n"
                    f"--- worker log ({worker_log}) ---\n{_tail(worker_log)}"
                )
            time.sleep(0.5)
        yield StandaloneCluster(master_url=master_url, ui_url=ui_url)
    finally:
        for proc in reversed(procs):
            _stop(proc)


def standalone_cluster(work_dir: Path) -> contextlib.AbstractContextManager[StandaloneCluster]:
    """Start a Master and one 2-core Worker on free loopback ports; stop both on exit.

    Waits until the master's ``/json/`` reports one ALIVE worker (60 s at most) and raises
    ``ClusterStartError`` with the tail of both logs otherwise.
    """
    return _cluster(work_dir)
