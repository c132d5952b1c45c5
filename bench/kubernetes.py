"""The Pi example on the `kubernetes` cluster type, on the simulated cluster of tests/kubesim
(a fake API server, its naive scheduler and a process kubelet that runs each executor pod as a
local Spark executor process), against the same Pi on the `local` cluster of the same server
and plain `spark-submit --master local[2]`, interleaved in pairs (the order alternates).

    .venv/bin/python bench/kubernetes.py [--pairs 5]

On `kubernetes` the job asks for 2 executors of 512m. Measured by the client: submit ->
SUCCEEDED (POST, then long-poll), submit -> the first executor pod Running (the fake's own
watch, in this process) and submit -> the first executor registered with the driver (the
line Spark logs then, seen as it lands in the driver's log file). Chidori's own share: the
total minus the driver process's lifetime as the server recorded it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# Run as a script, this file's folder comes first on the path and would stand for the
# `kubernetes` package (the official client) in anything that imports it.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != REPO / "bench"]
sys.path.insert(0, str(REPO))

import yaml  # noqa: E402
from tests.kubesim.apiserver import FakeKubernetes  # noqa: E402
from tests.kubesim.hosting import DRIVER_ACCOUNT, HOST_POD, NAMESPACE, NODES, host_chidori  # noqa: E402
from tests.kubesim.kubelet import Kubelet  # noqa: E402
from tests.server import ChidoriServer  # noqa: E402

from bench.common import (  # noqa: E402
    median,
    print_table,
    spark_env,
    timed_command,
    write_results,
)
from chidori.host.driver_host import log_path_for  # noqa: E402

PI = "examples/pi.py"
INSTALLATION = "bench"
K8S = "k8s"
EXECUTORS = 2
EXECUTOR_MEMORY = "512m"
# What the driver logs when an executor registers (KubernetesClusterSchedulerBackend's
# driver endpoint): "... Registered executor NettyRpcEndpointRef(spark-client://Executor)
# (127.0.0.1:PORT) with ID 1, ResourceProfileId 0".
REGISTERED = "Registered executor NettyRpcEndpointRef"
SETUPS = ("kubernetes", "local", "spark-submit")

Row = dict[str, Any]


class PodTimes:
    """When each job's first executor pod reached Running, from the fake's watch (delivered
    by the writing thread under the store's lock: only a dict write here)."""

    def __init__(self) -> None:
        self.first_running: dict[str, float] = {}

    def deliver(self, event: dict[str, Any] | None) -> None:
        if event is None or event.get("type") == "DELETED":
            return
        pod = event["object"]
        job = (pod["metadata"].get("labels") or {}).get("chidori.io/job")
        if job and (pod.get("status") or {}).get("phase") == "Running":
            self.first_running.setdefault(job, time.perf_counter())


class LogWatch:
    """When a line with `marker` first lands in a file (read every 20 ms, from the start)."""

    def __init__(self, path: Path, marker: str) -> None:
        self.path = path
        self.marker = marker.encode()
        self.found_at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="log-watch", daemon=True)

    def start(self) -> LogWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        offset, carry = 0, b""
        while not self._stop.is_set():
            try:
                with open(self.path, "rb") as log:
                    log.seek(offset)
                    chunk = log.read()
            except FileNotFoundError:
                chunk = b""
            if chunk:
                now = time.perf_counter()
                offset += len(chunk)
                text = carry + chunk
                if self.marker in text:
                    self.found_at = now
                    return
                carry = text[-len(self.marker) :]
            self._stop.wait(0.02)


class Simulated:
    """The simulated cluster of tests/test_kubernetes.py: two nodes, the pod hosting Chidori
    (Running and Ready, podIP 127.0.0.1), the driver's service account, the kubelet."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.api = FakeKubernetes()
        self.pods = PodTimes()
        self.kubelet: Kubelet | None = None
        self._subscription: Any = None

    def start(self) -> Simulated:
        api = self.api.start()
        host_chidori(api)
        self._subscription = api.subscribe(
            "pods",
            NAMESPACE,
            self.pods.deliver,
            label_selector=f"chidori.io/installation={INSTALLATION}",
        )
        self.kubelet = Kubelet(api, nodes=NODES, workdir=self.workdir).start()
        return self

    def stop(self) -> None:
        if self.kubelet is not None:
            self.kubelet.stop()
        if self._subscription is not None:
            self.api.unsubscribe(self._subscription)
        self.api.stop()

    def executor_pods(self) -> list[dict[str, Any]]:
        return self.api.list(
            "pods", NAMESPACE, label_selector=f"chidori.io/installation={INSTALLATION}"
        )

    def quiet(self) -> bool:
        """No executor pod left and no executor process running."""
        assert self.kubelet is not None
        return not self.executor_pods() and not self.kubelet.pids()

    def config(self, path: Path) -> Path:
        clusters = {
            K8S: {
                "type": "kubernetes",
                "api_server": self.api.url,
                "namespace": NAMESPACE,
                "image": "chidori:test",
                "driver_service_account": DRIVER_ACCOUNT,
                "installation": INSTALLATION,
                "executor": {"memory": EXECUTOR_MEMORY},
                "node_selector": {"pool": "spark"},
            }
        }
        path.write_text(yaml.safe_dump({"clusters": clusters}))
        return path


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.1)


def at(stamp: str) -> float:
    """An API time stamp (ISO 8601, UTC) as seconds since the epoch."""
    return datetime.fromisoformat(stamp).timestamp()


def seconds_between(start: str, end: str) -> float:
    return at(end) - at(start)


def through_chidori(server: ChidoriServer, sim: Simulated, cluster: str) -> Row:
    """One Pi through Chidori on `cluster`, timed by the client."""
    wait_until(sim.quiet, 120, "the previous job's executors gone")
    spec: dict[str, Any] = {"application": PI, "name": f"bench-pi-{cluster}", "cluster": cluster}
    if cluster == K8S:
        spec |= {"executor_instances": EXECUTORS, "executor_memory": EXECUTOR_MEMORY}
    started, wall_started = time.perf_counter(), time.time()
    with server.client() as client:
        answer = client.post("/api/v1/jobs", json=spec)
    if answer.status_code != 201:
        raise RuntimeError(f"submission refused: {answer.status_code} {answer.text}")
    job_id = int(answer.json()["id"])
    watch = LogWatch(log_path_for(server.home / "logs", job_id, 1), REGISTERED).start()
    try:
        done = server.wait(job_id, timeout=600)
        elapsed, wall_ended = time.perf_counter() - started, time.time()
    finally:
        watch.stop()
    if done["state"] != "SUCCEEDED" or done["attempts"] != 1:
        raise RuntimeError(f"job {job_id} ended {done['state']} after {done['attempts']} attempts")
    with server.client() as client:
        (attempt,) = client.get(f"/api/v1/jobs/{job_id}/attempts").json()["items"]
    log = server.log(job_id)
    if "Pi is roughly 3.1" not in log:
        raise RuntimeError(f"job {job_id}: no Pi in its log")
    registered = log.count(REGISTERED)
    if cluster == K8S and (registered != EXECUTORS or watch.found_at is None):
        raise RuntimeError(f"job {job_id}: {registered} executors registered, not {EXECUTORS}")
    pod_running = sim.pods.first_running.get(str(job_id))
    return {
        "job": job_id,
        "total_s": elapsed,
        # The driver process's lifetime as the server recorded it (the job's started_at,
        # just after the spawn, to its end), as bench/overhead.py takes it.
        "driver_s": float(done["duration_seconds"]),
        "own_s": elapsed - float(done["duration_seconds"]),
        # The attempt's started_at is its claim, just before the launch is built.
        "attempt_s": seconds_between(attempt["started_at"], attempt["finished_at"]),
        "own_by_attempt_s": elapsed
        - seconds_between(attempt["started_at"], attempt["finished_at"]),
        "startup_s": done["startup_seconds"],
        # Where Chidori's own share went (the server's clock is this machine's): the POST
        # until the job was recorded, the queue, the launch (admitted -> driver spawned), and
        # from the recorded end until the long-poll answered.
        "to_recorded_s": at(done["created_at"]) - wall_started,
        "queue_s": seconds_between(done["created_at"], done["admitted_at"]),
        "launch_s": seconds_between(done["admitted_at"], done["started_at"]),
        "end_to_client_s": wall_ended - at(done["finished_at"]),
        "first_pod_running_s": None if pod_running is None else pod_running - started,
        "first_registered_s": None if watch.found_at is None else watch.found_at - started,
        "executors_registered": registered,
    }


def spark_submit(argv: list[str], env: dict[str, str], sim: Simulated) -> Row:
    wait_until(sim.quiet, 120, "the previous job's executors gone")
    return {"total_s": timed_command(argv, env, REPO)}


def stray_processes(workdir: Path) -> list[int]:
    """Live processes started for a pod of this kubelet: the executors (their class path names
    the pod's directory) and their Python workers (whose working directory is that directory)."""
    found = []
    mark = str(workdir)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            cwd = os.readlink(entry / "cwd")
            if mark in cmdline or cwd.startswith(mark):
                found.append(int(entry.name))
    return found


def fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5)
    args = parser.parse_args()
    env = spark_env()
    submit = [f"{env['SPARK_HOME']}/bin/spark-submit", "--master", "local[2]", PI]
    load_before = os.getloadavg()
    rows: list[Row] = []
    warmup: Row = {}
    with tempfile.TemporaryDirectory(prefix="bench-k8s-") as tmp:
        root = Path(tmp)
        workdir = root / "kubelet"
        workdir.mkdir()
        sim = Simulated(workdir)
        try:
            sim.start()
            config = sim.config(root / "chidori.yaml")
            server_env = {"POD_NAME": HOST_POD, "POD_IP": "127.0.0.1"}
            with ChidoriServer(root / "home", config=config, env=server_env) as server:
                runs: dict[str, Callable[[], Row]] = {
                    "kubernetes": lambda: through_chidori(server, sim, K8S),
                    "local": lambda: through_chidori(server, sim, "local"),
                    "spark-submit": lambda: spark_submit(submit, env, sim),
                }
                print("warming up (one run each, not counted)...", flush=True)
                warmup = {name: run() for name, run in runs.items()}
                for pair in range(args.pairs):
                    order = SETUPS if pair % 2 == 0 else SETUPS[::-1]
                    load = os.getloadavg()[0]
                    got = {name: runs[name]() for name in order}
                    k8s, local, raw = got["kubernetes"], got["local"], got["spark-submit"]
                    rows.append(
                        {
                            "pair": pair + 1,
                            "order": list(order),
                            "load_1min": load,
                            "kubernetes": k8s,
                            "local": local,
                            "spark_submit": raw,
                            "k8s_over_local": k8s["total_s"] / local["total_s"],
                            "local_over_spark_submit": local["total_s"] / raw["total_s"],
                        }
                    )
                    print(
                        f"pair {pair + 1}: kubernetes {k8s['total_s']:.2f} s "
                        f"(first executor registered {fmt(k8s['first_registered_s'])} s), "
                        f"local {local['total_s']:.2f} s, spark-submit {raw['total_s']:.2f} s",
                        flush=True,
                    )
            wait_until(sim.quiet, 60, "the last executors gone")
        finally:
            sim.stop()
        stray = stray_processes(workdir)
    load_after = os.getloadavg()

    def col(setup: str, key: str) -> float:
        return median([r[setup][key] for r in rows])

    print()
    print_table(
        [
            "pair",
            "k8s (s)",
            "pod Running (s)",
            "registered (s)",
            "k8s own (s)",
            "local (s)",
            "local own (s)",
            "spark-submit (s)",
            "k8s/local",
            "local/spark-submit",
            "load",
        ],
        [
            [
                r["pair"],
                fmt(r["kubernetes"]["total_s"]),
                fmt(r["kubernetes"]["first_pod_running_s"]),
                fmt(r["kubernetes"]["first_registered_s"]),
                fmt(r["kubernetes"]["own_s"], 3),
                fmt(r["local"]["total_s"]),
                fmt(r["local"]["own_s"], 3),
                fmt(r["spark_submit"]["total_s"]),
                fmt(r["k8s_over_local"], 3),
                fmt(r["local_over_spark_submit"], 3),
                fmt(r["load_1min"], 1),
            ]
            for r in rows
        ],
    )
    medians: dict[str, Any] = {
        "kubernetes_s": col("kubernetes", "total_s"),
        "kubernetes_first_pod_running_s": col("kubernetes", "first_pod_running_s"),
        "kubernetes_first_registered_s": col("kubernetes", "first_registered_s"),
        "kubernetes_own_s": col("kubernetes", "own_s"),
        "kubernetes_own_by_attempt_s": col("kubernetes", "own_by_attempt_s"),
        "local_s": col("local", "total_s"),
        "local_own_s": col("local", "own_s"),
        "local_own_by_attempt_s": col("local", "own_by_attempt_s"),
        "spark_submit_s": col("spark_submit", "total_s"),
        "k8s_over_local": median([r["k8s_over_local"] for r in rows]),
        "local_over_spark_submit": median([r["local_over_spark_submit"] for r in rows]),
    }
    parts = ("to_recorded_s", "queue_s", "launch_s", "end_to_client_s", "own_s")
    print("\nChidori's own, where it went (medians, ms):")
    print_table(
        ["cluster", "POST -> recorded", "queue", "launch", "end -> client", "own"],
        [
            [setup, *(f"{1000 * col(setup, part):.1f}" for part in parts)]
            for setup in ("kubernetes", "local")
        ],
    )
    medians["own_parts_ms"] = {
        setup: {part: 1000 * col(setup, part) for part in parts}
        for setup in ("kubernetes", "local")
    }
    print(
        f"\nmedian: kubernetes {medians['kubernetes_s']:.2f} s (first executor pod Running "
        f"{medians['kubernetes_first_pod_running_s']:.2f} s, registered "
        f"{medians['kubernetes_first_registered_s']:.2f} s), local {medians['local_s']:.2f} s, "
        f"spark-submit {medians['spark_submit_s']:.2f} s"
    )
    print(
        f"median ratios: k8s/local {medians['k8s_over_local']:.3f}, local/spark-submit "
        f"{medians['local_over_spark_submit']:.3f}; Chidori's own: kubernetes "
        f"{medians['kubernetes_own_s']:.3f} s, local {medians['local_own_s']:.3f} s"
    )
    print(
        f"load average before {' '.join(f'{x:.2f}' for x in load_before)}, "
        f"after {' '.join(f'{x:.2f}' for x in load_after)}"
    )
    path = write_results(
        "kubernetes",
        {
            "pairs": rows,
            "warmup": warmup,
            "medians": medians,
            "load_before": load_before,
            "load_after": load_after,
            "kubernetes_spec": {
                "application": PI,
                "executor_instances": EXECUTORS,
                "executor_memory": EXECUTOR_MEMORY,
            },
            "spark_submit_command": " ".join(submit),
            "stray_processes": stray,
        },
    )
    print(f"results: {path}")
    if stray:
        print(f"stray executor processes after the kubelet stopped: {stray}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
