"""A "process kubelet" for the fake cluster: runs bound pods as local processes.

It watches the pods of the nodes it serves (`nodes=[...]`, or every Node object in the
cluster), and for each newly bound pod: materialises its volumes, builds each container's
command line and environment (`containers.py`: Spark executors the way the Spark image's
entrypoint runs them, other containers by their `command`), starts every container as a
process in its own session and process group (its own directory as HOME; stdout and stderr
together into one log file per container run, which `pods/NAME/log` serves), and writes the
status back as a kubelet does: Pending → Running (podIP and hostIP 127.0.0.1, startTime,
conditions PodReadyToStartContainers / Initialized / ContainersReady / Ready / PodScheduled,
containerStatuses with state.running, restartCount) → on exit `state.terminated` (exitCode,
reason Completed or Error, startedAt, finishedAt) and phase Succeeded or Failed once every
container has ended. `restartPolicy` Always / OnFailure restart a container (restartCount,
lastState, a back-off of one second per restart up to ten). When the main process of a
container exits, whatever is left in its process group is killed (a container's processes die
with it).

Deletion: when a pod gets `deletionTimestamp` (graceful deletion) or disappears (immediate
deletion), every container gets SIGTERM on its process group, then SIGKILL after the grace
period (`deletionGracePeriodSeconds`, at most `max_grace`); the final status is written and
the pod removed with a delete of grace period 0, as the kubelet finishes a graceful deletion.

A container that cannot run as a process (no command and not a Spark executor, an unknown
executable, a missing ConfigMap) stays waiting with reason CreateContainerError and the reason
as message; the pod stays Pending. `stop()` kills every process it started (SIGTERM, then
SIGKILL after `grace` seconds) and is also registered with `atexit`.

Not modelled: init containers (ignored), probes (a running container is ready at once),
resource limits (no cgroups: a process may use what it likes), images, networking (every pod
is 127.0.0.1 and shares the host's ports), node heartbeats, eviction under node pressure
(conditions only stop scheduling), `previous` logs, ephemeral containers, exec/attach.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.kubesim import resources
from tests.kubesim.cluster import Cluster
from tests.kubesim.containers import POD_IP, CannotRun, Settings, launch_for, materialise_volumes
from tests.kubesim.errors import ApiError
from tests.kubesim.scheduler import Scheduler

Obj = dict[str, Any]


@dataclass
class _Run:
    """One container of one pod."""

    name: str
    image: str
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    started_at: str = ""
    restarts: int = 0
    state: Obj = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: Obj = field(default_factory=dict)


@dataclass
class _Pod:
    namespace: str
    name: str
    uid: str
    root: Path
    restart_policy: str
    grace: float = 30.0
    containers: dict[str, _Run] = field(default_factory=dict)
    started_at: str = ""
    terminating: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


class Kubelet:
    """Start with `start()` (or `with`); `stop()` kills everything it started."""

    def __init__(
        self,
        cluster: Cluster,
        *,
        nodes: Iterable[str] | None = None,
        scheduler: bool = True,
        python: str | None = None,
        java_home: Path | None = None,
        spark_home: Path | None = None,
        workdir: Path | None = None,
        extra_env: dict[str, str] | None = None,
        max_grace: float = 30.0,
    ) -> None:
        self.cluster = cluster
        self.nodes = None if nodes is None else set(nodes)
        self.max_grace = max_grace
        port = int(getattr(cluster, "port", 0))
        self.settings = Settings(
            api_port=port, spark_home=spark_home, java_home=java_home, extra_env=extra_env or {}
        )
        if python is not None:
            self.settings.python = python
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="kubesim-kubelet-"))
        self.scheduler = Scheduler(cluster) if scheduler else None
        self._pods: dict[str, _Pod] = {}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._watch: Any = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle ----

    def start(self) -> Kubelet:
        self.cluster.add_log_provider(self.log)
        self._watch = self.cluster.watch("pods")
        self._thread = threading.Thread(target=self._loop, name="kubesim-kubelet", daemon=True)
        self._thread.start()
        if self.scheduler is not None:
            self.scheduler.start()
        atexit.register(self.stop)
        return self

    def stop(self, grace: float = 5.0) -> None:
        """Stop watching and kill every process this kubelet started."""
        atexit.unregister(self.stop)
        self._stopping.set()
        if self.scheduler is not None:
            self.scheduler.stop()
        if self._watch is not None:
            self._watch.close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._lock:
            pods = list(self._pods.values())
        for pod in pods:
            pod.terminating = True
        self._kill_all([r for p in pods for r in p.containers.values()], grace)
        for thread in list(self._threads):
            thread.join(timeout=10)
        self.cluster.remove_log_provider(self.log)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Kubelet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def pids(self) -> list[int]:
        """Process ids of the containers running now."""
        with self._lock:
            runs = [r for p in self._pods.values() for r in p.containers.values()]
        return [r.proc.pid for r in runs if r.proc is not None and r.proc.poll() is None]

    def log(self, namespace: str, pod: str, container: str) -> str | None:
        """The container's current log (the log provider the API server calls)."""
        with self._lock:
            found = next(
                (p for p in self._pods.values() if (p.namespace, p.name) == (namespace, pod)), None
            )
        run = None if found is None else found.containers.get(container)
        if run is None or run.log is None:
            return None
        return run.log.read_text(errors="replace") if run.log.exists() else ""

    # ---- the watch loop ----

    def _serves(self, node: str) -> bool:
        if self.nodes is not None:
            return node in self.nodes
        return self.cluster.try_get("nodes", node) is not None

    def _loop(self) -> None:
        while not self._stopping.is_set():
            event = self._watch.get(timeout=0.5)
            if event is None:
                if self._watch.closed:
                    return
                continue
            pod = event["object"]
            meta = pod["metadata"]
            with self._lock:
                known = self._pods.get(meta["uid"])
            if event["type"] == "DELETED" or meta.get("deletionTimestamp"):
                if known is not None and not known.terminating:
                    known.terminating = True
                    grace = float(meta.get("deletionGracePeriodSeconds") or 0)
                    known.grace = min(grace, self.max_grace)
                    self._spawn(self._terminate, known, event["type"] == "DELETED")
                continue
            node = pod.get("spec", {}).get("nodeName")
            pending = pod.get("status", {}).get("phase", "Pending") == "Pending"
            if known is None and node and pending and self._serves(node):
                self._spawn(self._start_pod, pod)

    def _spawn(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    # ---- starting ----

    def _start_pod(self, pod: Obj) -> None:
        meta, spec = pod["metadata"], pod.get("spec", {})
        root = self.workdir / f"{meta['namespace']}_{meta['name']}_{meta['uid'][:8]}"
        record = _Pod(
            meta["namespace"], meta["name"], meta["uid"], root, spec.get("restartPolicy", "Always")
        )
        for c in spec.get("containers") or []:
            record.containers[c["name"]] = _Run(c["name"], str(c.get("image", "")))
        with self._lock:
            if meta["uid"] in self._pods or self._stopping.is_set():
                return
            self._pods[meta["uid"]] = record
        root.mkdir(parents=True, exist_ok=True)
        try:
            volumes = materialise_volumes(self.cluster, pod, root)
            launches = {
                c["name"]: launch_for(self.cluster, pod, c, root, volumes, self.settings)
                for c in spec.get("containers") or []
            }
        except CannotRun as exc:
            for run in record.containers.values():
                run.state = {"waiting": {"reason": "CreateContainerError", "message": str(exc)}}
            self._write_status(record)
            return
        record.started_at = resources.timestamp()
        for name, launch in launches.items():
            self._run_container(record, record.containers[name], launch)
        self._write_status(record)
        for name, launch in launches.items():
            self._spawn(self._supervise, record, record.containers[name], launch)

    def _run_container(self, pod: _Pod, run: _Run, launch: Any) -> None:
        run.log = pod.root / "logs" / f"{run.name}-{run.restarts}.log"
        run.log.parent.mkdir(parents=True, exist_ok=True)
        launch.cwd.mkdir(parents=True, exist_ok=True)
        with pod.lock, open(run.log, "wb") as out:
            if pod.terminating or self._stopping.is_set():
                return
            run.proc = subprocess.Popen(
                launch.argv,
                env=launch.env,
                cwd=launch.cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        run.started_at = resources.timestamp()
        run.state = {"running": {"startedAt": run.started_at}}

    def _supervise(self, pod: _Pod, run: _Run, launch: Any) -> None:
        while run.proc is not None:
            code = run.proc.wait()
            _killpg(run.proc.pid, signal.SIGKILL)
            exit_code = code if code >= 0 else 128 - code
            run.state = {
                "terminated": {
                    "exitCode": exit_code,
                    "reason": "Completed" if exit_code == 0 else "Error",
                    "startedAt": run.started_at,
                    "finishedAt": resources.timestamp(),
                    "containerID": f"kubesim://{run.proc.pid}",
                }
            }
            again = pod.restart_policy == "Always" or (
                pod.restart_policy == "OnFailure" and exit_code != 0
            )
            if pod.terminating or self._stopping.is_set() or not again:
                break
            run.last_state, run.restarts = run.state, run.restarts + 1
            run.state = {"waiting": {"reason": "CrashLoopBackOff" if exit_code else "Completed"}}
            self._write_status(pod)
            if self._stopping.wait(min(run.restarts, 10)) or pod.terminating:
                break
            self._run_container(pod, run, launch)
            self._write_status(pod)
        if not pod.terminating and not self._stopping.is_set():
            self._write_status(pod)

    # ---- terminating ----

    def _terminate(self, pod: _Pod, already_gone: bool) -> None:
        with pod.lock:  # no container starts after this
            pod.terminating = True
        self._kill_all(list(pod.containers.values()), pod.grace)
        deadline = time.monotonic() + 5
        while any(r.proc is not None and r.proc.poll() is None for r in pod.containers.values()):
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        if already_gone or self._stopping.is_set():
            return
        self._write_status(pod, final=True)
        with contextlib.suppress(ApiError):
            self.cluster.delete("pods", pod.name, pod.namespace, grace_period=0)

    def _kill_all(self, runs: list[_Run], grace: float) -> None:
        alive = [r.proc for r in runs if r.proc is not None and r.proc.poll() is None]
        for proc in alive:
            _killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while any(p.poll() is None for p in alive) and time.monotonic() < deadline:
            time.sleep(0.05)
        for proc in alive:
            _killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)

    # ---- status ----

    def _write_status(self, pod: _Pod, final: bool = False) -> None:
        runs = list(pod.containers.values())
        for run in runs:
            if final and run.proc is not None and "terminated" not in run.state:
                code = run.proc.poll()
                run.state = {
                    "terminated": {
                        "exitCode": 137 if code is None else (code if code >= 0 else 128 - code),
                        "reason": "Error",
                        "startedAt": run.started_at,
                        "finishedAt": resources.timestamp(),
                    }
                }
        running = [r for r in runs if "running" in r.state]
        ended = [r for r in runs if "terminated" in r.state]
        if runs and len(ended) == len(runs):
            ok = all(r.state["terminated"]["exitCode"] == 0 for r in runs)
            phase = "Succeeded" if ok else "Failed"
        elif pod.started_at and (running or ended):
            phase = "Running"
        else:
            phase = "Pending"
        ready = bool(runs) and len(running) == len(runs)
        stamp = resources.timestamp()

        def condition(kind: str, good: bool, reason: str = "") -> Obj:
            out: Obj = {"type": kind, "status": "True" if good else "False"}
            out.update(lastProbeTime=None, lastTransitionTime=stamp)
            if not good and reason:
                out["reason"] = reason
            return out

        not_ready = "PodCompleted" if phase in ("Succeeded", "Failed") else "ContainersNotReady"
        statuses = [
            {
                "name": r.name,
                "image": r.image,
                "imageID": f"kubesim://{r.image}",
                "containerID": f"kubesim://{r.proc.pid}" if r.proc is not None else "",
                "ready": "running" in r.state,
                "started": "running" in r.state,
                "restartCount": r.restarts,
                "state": r.state,
                "lastState": r.last_state,
            }
            for r in runs
        ]

        def change(obj: Obj) -> None:
            status = obj.setdefault("status", {})
            old = {c.get("type"): c for c in status.get("conditions") or []}
            new = [
                condition("PodReadyToStartContainers", bool(pod.started_at)),
                condition("Initialized", True),
                condition("Ready", ready, not_ready),
                condition("ContainersReady", ready, not_ready),
            ]
            for c in new:
                before = old.get(c["type"])
                if before is not None and before.get("status") == c["status"]:
                    c["lastTransitionTime"] = before.get("lastTransitionTime")
            status["conditions"] = new + [old[k] for k in ("PodScheduled",) if k in old]
            status.update(phase=phase, containerStatuses=statuses)
            if pod.started_at:
                status.update(podIP=POD_IP, podIPs=[{"ip": POD_IP}], startTime=pod.started_at)
                status.update(hostIP=POD_IP, hostIPs=[{"ip": POD_IP}])

        with contextlib.suppress(ApiError):
            self.cluster.mutate("pods", pod.name, change, pod.namespace, "status")


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
