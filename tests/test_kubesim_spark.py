"""The real proof of tests/kubesim/: the stock `spark-submit` of the installed pyspark, in client
mode against the fake API server, gets its executors as pods that the process kubelet runs as
real JVMs (the way the Spark image's entrypoint would), and owner GC takes them away.

The driver runs here, as it would in Chidori's pod; `chidori-0` is a pod object standing for
that pod (bound to a node the kubelet does not serve, status Running, podIP 127.0.0.1). Spark
talks to the fake through fabric8's Vert.x client (`k8s://http://127.0.0.1:PORT`), with the
kubeconfig and service-account auto-configuration switched off.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.kubesim.apiserver import FakeKubernetes
from tests.kubesim.kubelet import Kubelet
from tests.kubesim.watches import Watch
from tests.test_kubesim import live_processes

pytestmark = [pytest.mark.kubernetes, pytest.mark.spark]

Obj = dict[str, Any]
REPO = Path(__file__).resolve().parents[1]
SPARK_HOME = Path(sys.executable).parents[1] / "lib/python3.11/site-packages/pyspark"
EXECUTOR = "org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend"
SLOW_APP = """
import time
from pyspark.sql import SparkSession

spark = SparkSession.builder.appName("slow").getOrCreate()
spark.sparkContext.parallelize(range(400), 400).map(lambda x: time.sleep(1) or x).count()
spark.stop()
"""


@pytest.fixture(params=["websocket", "http"])
def cluster(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[FakeKubernetes, Kubelet]]:
    """The fake with three nodes and the hosting pod; `http`: watches over WebSocket refused
    (503), so fabric8 falls back to its HTTP watch."""
    if shutil.which("java") is None and "JAVA_HOME" not in os.environ:
        pytest.fail("Spark needs Java (the CI installs a JDK)")
    with FakeKubernetes(websocket_watches=request.param == "websocket") as fake:
        # Chidori's own node: executors do not tolerate its taint, so they go to the others.
        taint = {"key": "chidori.io/host", "value": "true", "effect": "NoSchedule"}
        fake.add_node("chidori-host", taints=[taint])
        fake.add_node("node-1", cpu="2", memory="4Gi")
        fake.add_node("node-2", cpu="2", memory="4Gi")
        host = {
            "metadata": {"name": "chidori-0", "labels": {"app": "chidori"}},
            "spec": {
                "nodeName": "chidori-host",
                "containers": [{"name": "chidori", "image": "chidori:test"}],
            },
        }
        fake.create("pods", host)
        fake.update_status(
            "pods",
            "chidori-0",
            {
                "phase": "Running",
                "podIP": "127.0.0.1",
                "hostIP": "127.0.0.1",
                "conditions": [{"type": "Ready", "status": "True"}],
            },
        )
        kubelet = Kubelet(fake, nodes=["node-1", "node-2"], workdir=tmp_path / "kubelet")
        with kubelet:
            yield fake, kubelet


def spark_submit(
    fake: FakeKubernetes, tmp_path: Path, prefix: str, *app: str
) -> subprocess.Popen[str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "KUBERNETES_AUTH_TRYKUBECONFIG": "false",
        "KUBERNETES_AUTH_TRYSERVICEACCOUNT": "false",
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_HOME": str(SPARK_HOME),
        "PYSPARK_PYTHON": sys.executable,
        "LANG": "C.UTF-8",
    }
    if "JAVA_HOME" in os.environ:
        env["JAVA_HOME"] = os.environ["JAVA_HOME"]
    conf = {
        "spark.kubernetes.namespace": "default",
        "spark.kubernetes.container.image": "unused",
        "spark.kubernetes.driver.pod.name": "chidori-0",
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.executor.instances": "2",
        "spark.executor.memory": "512m",
        "spark.kubernetes.executor.podNamePrefix": prefix,
        "spark.ui.enabled": "false",
    }
    argv = [str(SPARK_HOME / "bin/spark-submit"), "--master", f"k8s://{fake.url}"]
    argv += ["--deploy-mode", "client"]
    for key, value in conf.items():
        argv += ["--conf", f"{key}={value}"]
    return subprocess.Popen(
        [*argv, *app],
        env=env,
        cwd=REPO,
        stdout=(tmp_path / "driver.out").open("w"),
        stderr=(tmp_path / "driver.log").open("w"),
        text=True,
        start_new_session=True,
    )


def drain(events: Watch) -> list[Obj]:
    return list(iter(lambda: events.get(0.1), None))


def running(pod: Obj) -> bool:
    return bool(pod.get("status", {}).get("phase") == "Running")


def executor_processes() -> list[tuple[int, int, str]]:
    return [p for p in live_processes() if EXECUTOR in p[2]]


def wait_until_no_executor_process(timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while executor_processes() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert executor_processes() == []


@pytest.mark.timeout(600)
# WebSocket watches (fabric8's first choice) are what tests/test_kubernetes.py runs on; here the
# fallback to HTTP watches, with the stock spark-submit (one Spark run each: the suite is slow).
@pytest.mark.parametrize("cluster", ["http"], indirect=True)
def test_spark_pi_in_client_mode_gets_its_executors_as_pods(
    cluster: tuple[FakeKubernetes, Kubelet], tmp_path: Path
) -> None:
    fake, kubelet = cluster
    host_uid = fake.get("pods", "chidori-0")["metadata"]["uid"]
    pods = fake.watch("pods", label_selector="spark-role=executor", resource_version="0")
    maps = fake.watch("configmaps", resource_version="0")
    started = time.monotonic()
    driver = spark_submit(fake, tmp_path, "kubesim-pi", "examples/pi.py", "4")
    driver.wait(timeout=420)
    took = time.monotonic() - started
    out, log = (tmp_path / "driver.out").read_text(), (tmp_path / "driver.log").read_text()
    assert driver.returncode == 0, log[-5000:]
    assert "Pi is roughly 3.1" in out, out
    seen = drain(pods)
    names = sorted({e["object"]["metadata"]["name"] for e in seen})
    assert names == ["kubesim-pi-exec-1", "kubesim-pi-exec-2"], names
    for name in names:
        events = [e for e in seen if e["object"]["metadata"]["name"] == name]
        first = events[0]["object"]
        (owner,) = first["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["name"], owner["uid"]) == ("Pod", "chidori-0", host_uid)
        assert owner["controller"] is True
        phases = [e["object"].get("status", {}).get("phase") for e in events]
        assert "Running" in phases, phases
        assert events[-1]["type"] == "DELETED"  # the driver deleted it at the end
        nodes = {e["object"]["spec"].get("nodeName") for e in events} - {None}
        assert len(nodes) == 1 and nodes <= {"node-1", "node-2"}, nodes
        container = first["spec"]["containers"][0]["name"]
        assert "Successfully registered with driver" in (
            fake.pod_log("default", name, container) or ""
        )
    created_maps = [e["object"] for e in drain(maps) if e["type"] == "ADDED"]
    assert any(m["metadata"]["name"].endswith("-conf-map") for m in created_maps), created_maps
    for name in names:
        fake.wait_deleted("pods", name, timeout=60)
    wait_until_no_executor_process()
    assert kubelet.pids() == []
    watches = [r for r in fake.requests if "watch=true" in r.query]
    if fake.websocket_watches:
        assert [(r.transport, r.status) for r in watches] == [("websocket", 101)]
    else:  # refused as WebSocket (fabric8 retries a 503 a few times), then the HTTP stream
        transports = [(r.transport, r.status) for r in watches]
        assert set(transports[:-1]) == {("websocket", 503)} and transports[-1] == ("http", 200)
    print(f"\nspark-submit Pi took {took:.1f} s; fabric8 called:")
    for line in sorted({f"{r.method} {r.path} ({r.transport})" for r in fake.requests}):
        print("  " + line)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("cluster", ["websocket"], indirect=True)
def test_deleting_the_hosting_pod_garbage_collects_the_executor_pods(
    cluster: tuple[FakeKubernetes, Kubelet], tmp_path: Path
) -> None:
    fake, _ = cluster
    app = tmp_path / "slow.py"
    app.write_text(SLOW_APP)
    driver = spark_submit(fake, tmp_path, "kubesim-gc", str(app))
    try:
        for name in ("kubesim-gc-exec-1", "kubesim-gc-exec-2"):
            fake.wait_for(
                "pods", name, lambda p: p["status"].get("phase") == "Running", timeout=300
            )
        deadline = time.monotonic() + 120
        while len(executor_processes()) < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert len(executor_processes()) >= 2
        fake.delete("pods", "chidori-0", grace_period=0)
        for name in ("kubesim-gc-exec-1", "kubesim-gc-exec-2"):
            fake.wait_deleted("pods", name, timeout=60)
        assert not [
            m for m in fake.list("configmaps") if m["metadata"]["name"].endswith("-conf-map")
        ]
        wait_until_no_executor_process()
        # Replacement executors the driver asks for have no owner any more: collected at once.
        time.sleep(5)
        assert fake.list("pods", label_selector="spark-role=executor") == []
    finally:
        os.killpg(driver.pid, signal.SIGTERM)
        try:
            driver.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait(timeout=30)
    wait_until_no_executor_process()
