"""The `kubernetes` cluster type end to end, on the simulated cluster (tests/kubesim): a fake
API server, its naive scheduler and a process kubelet that runs each executor pod the hosted
driver creates as a real Spark executor process on this machine.

One fake cluster and one server are shared by the module (Spark starts are slow). Jobs are
submitted by a plain user. What the fake does not do (networking, real scheduling, cgroups)
is said in tests/kubesim; the tests check what Chidori does with what the API reports.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.kubesim.apiserver import FakeKubernetes
from tests.kubesim.hosting import DRIVER_ACCOUNT, HOST_POD, NAMESPACE, NODES, host_chidori
from tests.kubesim.kubelet import Kubelet
from tests.server import ChidoriServer

pytestmark = [pytest.mark.kubernetes, pytest.mark.spark]


class Sim:
    def __init__(self, api: FakeKubernetes, kubelet: Kubelet, installation: str) -> None:
        self.api = api
        self.kubelet = kubelet
        self.installation = installation

    def pods_of(self, job_id: int) -> list[dict[str, Any]]:
        return self.api.list(
            "pods",
            NAMESPACE,
            label_selector=f"chidori.io/installation={self.installation},chidori.io/job={job_id}",
        )

    def wait_for(self, check: Any, timeout: float = 60, what: str = "") -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = check()
            if found:
                return found
            time.sleep(0.25)
        raise AssertionError(f"timed out waiting for {what or check}")


@pytest.fixture(scope="module")
def sim() -> Iterator[Sim]:
    with FakeKubernetes() as api:
        host_chidori(api)
        kubelet = Kubelet(api, nodes=NODES).start()
        try:
            yield Sim(api, kubelet, f"t{secrets.token_hex(3)}")
        finally:
            kubelet.stop()


def write_config(path: Path, sim: Sim) -> Path:
    config = {
        "clusters": {
            "k8s": {
                "type": "kubernetes",
                "api_server": sim.api.url,
                "namespace": NAMESPACE,
                "image": "chidori:test",
                "driver_service_account": DRIVER_ACCOUNT,
                "installation": sim.installation,
                "executor": {"pending_timeout": "10s", "memory": "512m"},
                # One warm driver: no executors while idle, the job's asked for at hand-over.
                "warm_pool": {"size": 1},
                "node_selector": {"pool": "spark"},
                "pools": {
                    # Required node affinity no node satisfies: admission (which reads node
                    # selectors and taints, not affinity) lets it in; the scheduler cannot.
                    "nowhere": {
                        "affinity": {
                            "nodeAffinity": {
                                "requiredDuringSchedulingIgnoredDuringExecution": {
                                    "nodeSelectorTerms": [
                                        {
                                            "matchExpressions": [
                                                {
                                                    "key": "zone",
                                                    "operator": "In",
                                                    "values": ["mars"],
                                                }
                                            ]
                                        }
                                    ]
                                }
                            }
                        }
                    }
                },
            }
        }
    }
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def kube_server(sim: Sim, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChidoriServer]:
    home = tmp_path_factory.mktemp("kube-server")
    config = write_config(home / "chidori.yaml", sim)
    # A stray executor pod of this installation whose attempt is active nowhere (what a
    # server killed with -9 leaves): the first pass of the new server sweeps it.
    sim.api.create(
        "pods",
        {
            "metadata": {
                "name": "chidori-999-1-stray-exec-1",
                "labels": {
                    "chidori.io/installation": sim.installation,
                    "chidori.io/job": "999",
                    "chidori.io/attempt": "1",
                },
            },
            "spec": {"containers": [{"name": "x", "image": "x"}], "nodeName": "node-a"},
        },
        NAMESPACE,
    )
    env = {"POD_NAME": HOST_POD, "POD_IP": "127.0.0.1"}
    with ChidoriServer(home, config=config, env=env) as server:
        yield server


@pytest.fixture(scope="module")
def user(kube_server: ChidoriServer) -> str:
    with kube_server.client() as admin:
        made = admin.post("/api/v1/admin/users", json={"name": "kim", "role": "user"})
        assert made.status_code == 201, made.text
        return str(admin.post("/api/v1/tokens", json={"user": "kim", "name": "t"}).json()["token"])


def submit(server: ChidoriServer, token: str, **spec: Any) -> dict[str, Any]:
    with server.client(token) as client:
        answer = client.post("/api/v1/jobs", json={"cluster": "k8s", **spec})
        assert answer.status_code == 201, answer.text
        job: dict[str, Any] = answer.json()
        return job


def attempts(server: ChidoriServer, job_id: int) -> list[dict[str, Any]]:
    with server.client() as client:
        items: list[dict[str, Any]] = client.get(f"/api/v1/jobs/{job_id}/attempts").json()["items"]
        return items


def test_the_sweep_at_start_deletes_what_no_active_attempt_owns(
    sim: Sim, kube_server: ChidoriServer
) -> None:
    sim.wait_for(lambda: not sim.pods_of(999), 30, "the stray pod swept")


def test_pi_runs_with_executor_pods_and_leaves_none_behind(
    sim: Sim, kube_server: ChidoriServer, user: str
) -> None:
    job = submit(kube_server, user, application="examples/pi.py", executor_instances=2, args=["4"])
    seen: dict[str, dict[str, Any]] = {}

    def capture() -> bool:
        for pod in sim.pods_of(job["id"]):
            seen[pod["metadata"]["name"]] = pod
        return False

    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        capture()
        with kube_server.client() as client:
            state = client.get(f"/api/v1/jobs/{job['id']}").json()["state"]
        if state in ("SUCCEEDED", "FAILED", "CANCELLED"):
            break
        time.sleep(0.3)
    done = kube_server.wait(job["id"])
    assert done["state"] == "SUCCEEDED", kube_server.log(job["id"])
    assert "Pi is roughly 3.1" in kube_server.log(job["id"])
    # Its executors are not the warm pool's size (512m): it starts cold, and says why.
    assert done["start_type"] == "cold", done
    assert "executor memory 1g differs from the warm pool's 512m" in done["start_note"], done
    # Two executor pods, labelled for the attempt, owned by the hosting pod, on the pool.
    assert len(seen) == 2, list(seen)
    host_uid = sim.api.get("pods", HOST_POD, NAMESPACE)["metadata"]["uid"]
    for pod in seen.values():
        labels = pod["metadata"]["labels"]
        assert labels["chidori.io/attempt"] == "1"
        assert labels["chidori.io/installation"] == sim.installation
        owners = pod["metadata"].get("ownerReferences") or []
        assert [o["uid"] for o in owners] == [host_uid]
        assert pod["spec"]["nodeSelector"] == {"pool": "spark"}
    # What the API shows of them: each pod with its node and phase, and events.
    (attempt,) = attempts(kube_server, job["id"])
    shown = {pod["name"]: pod for pod in attempt["executors"] or []}
    assert set(shown) <= set(seen) and shown, attempt
    with kube_server.client() as client:
        events = client.get(f"/api/v1/jobs/{job['id']}/events").json()["items"]
    notes = [e["reason"] for e in events if e["type"] == "executor"]
    assert any("Running on node node-" in note for note in notes), notes
    # fabric8 watched the executors over WebSocket (its first choice).
    watches = [r for r in sim.api.requests if "watch=true" in r.query and "pods" in r.path]
    assert ("websocket", 101) in [(r.transport, r.status) for r in watches]
    # Nothing left: no pod of the job, no executor process.
    sim.wait_for(lambda: not sim.pods_of(job["id"]), 30, "executor pods deleted")
    sim.wait_for(lambda: not sim.kubelet.pids(), 30, "executor processes gone")


def test_a_job_waits_while_every_node_is_under_disk_pressure(
    sim: Sim, kube_server: ChidoriServer, user: str
) -> None:
    for node in ("node-a", "node-b"):
        sim.api.set_node_condition(node, "DiskPressure", "True")
    time.sleep(3)  # the server reads the nodes every 2 s (what a kubelet reports is older)
    try:
        job = submit(kube_server, user, application="examples/pi.py", executor_instances=1)

        def reason() -> str | None:
            with kube_server.client() as client:
                found = client.get(f"/api/v1/jobs/{job['id']}").json()
            assert found["state"] == "QUEUED", found
            text = found.get("waiting_reason") or ""
            return text if "DiskPressure" in text else None

        text = sim.wait_for(reason, 30, "the DiskPressure wait reason")
        assert text == (
            "no schedulable node with room for an executor of 1408m and 1 core: "
            "2 nodes under DiskPressure"
        )
        time.sleep(3)  # still held after a few admit steps and node refreshes
        assert reason() == text
    finally:
        for node in ("node-a", "node-b"):
            sim.api.set_node_condition(node, "DiskPressure", "False")
    # Admitted once the condition clears (then cancelled: running it proves nothing more).
    kube_server.wait(job["id"], until={"ADMITTED", "RUNNING", "SUCCEEDED"}, timeout=60)
    with kube_server.client() as admin:
        admin.delete(f"/api/v1/jobs/{job['id']}")
    assert kube_server.wait(job["id"])["state"] in ("CANCELLED", "SUCCEEDED")


def test_an_executor_that_cannot_be_scheduled_fails_the_attempt_with_the_reason(
    sim: Sim, kube_server: ChidoriServer, user: str
) -> None:
    job = submit(
        kube_server,
        user,
        application="examples/pi.py",
        executor_instances=1,
        max_retries=0,
        conf={"spark.chidori.kubernetes.pool": "nowhere"},
    )
    done = kube_server.wait(job["id"], timeout=180)
    assert done["state"] == "FAILED"
    assert "Pending for more than 10 s" in done["reason"], done
    assert "didn't match Pod's node affinity/selector" in done["reason"], done
    sim.wait_for(lambda: not sim.pods_of(job["id"]), 30, "the pending pod deleted")


def test_a_job_may_not_set_what_the_admin_chooses(kube_server: ChidoriServer, user: str) -> None:
    with kube_server.client(user) as client:
        for conf in (
            {"spark.kubernetes.namespace": "kube-system"},
            {"spark.kubernetes.executor.podTemplateFile": "/etc/passwd"},
            {"spark.chidori.kubernetes.pool": "gpu"},
        ):
            answer = client.post(
                "/api/v1/jobs",
                json={"cluster": "k8s", "application": "examples/pi.py", "conf": conf},
            )
            assert answer.status_code == 422 or answer.status_code == 400, answer.text
            assert "conf" in answer.text, answer.text


def test_kill_9_of_the_server_leaves_no_executor_pod_after_the_next_start(
    sim: Sim, kube_server: ChidoriServer, user: str
) -> None:
    job = submit(
        kube_server,
        user,
        application="tests/jobs/spark_sleep.py",
        executor_instances=1,
        max_retries=0,
    )
    sim.wait_for(
        lambda: any(p["status"].get("phase") == "Running" for p in sim.pods_of(job["id"])),
        180,
        "a running executor pod",
    )
    kube_server.kill()
    # The pods outlive the server: nothing else deletes them (its pod is still there).
    time.sleep(2)
    assert sim.pods_of(job["id"])
    kube_server.start()

    def first_attempt_lost_and_its_pods_gone() -> bool:
        first = attempts(kube_server, job["id"])[0]
        left = [
            p
            for p in sim.pods_of(job["id"])
            if p["metadata"]["labels"]["chidori.io/attempt"] == "1"
        ]
        return first["state"] == "LOST" and not left

    sim.wait_for(first_attempt_lost_and_its_pods_gone, 60, "attempt 1 LOST, its executors deleted")
    assert attempts(kube_server, job["id"])[0]["reason"] == "server restarted while the driver ran"
    with kube_server.client() as admin:  # the retry would sleep for ten minutes
        assert admin.delete(f"/api/v1/jobs/{job['id']}").status_code == 200
    assert kube_server.wait(job["id"], timeout=120)["state"] == "CANCELLED"
    sim.wait_for(lambda: not sim.pods_of(job["id"]), 60, "no executor pod of the job left")


def test_a_warm_driver_holds_no_executors_and_asks_for_the_jobs_at_hand_over(
    sim: Sim, kube_server: ChidoriServer, user: str
) -> None:
    deadline = time.monotonic() + 120
    with kube_server.client() as client:
        while not any(
            d["state"] == "idle"
            for pool in client.get("/api/v1/warm-pool").json()["items"]
            for d in pool["drivers"]
        ):
            assert time.monotonic() < deadline, "no idle warm driver"
            time.sleep(0.5)
    # Idle, it holds no executor pod: every pod of the installation belongs to a job.
    everything = sim.api.list(
        "pods", NAMESPACE, label_selector=f"chidori.io/installation={sim.installation}"
    )
    assert all("chidori.io/job" in p["metadata"]["labels"] for p in everything), everything
    job = submit(
        kube_server,
        user,
        application="examples/pi.py",
        executor_instances=1,
        executor_memory="512m",
    )
    names: set[str] = set()

    def running_pods() -> bool:
        pods = sim.pods_of(job["id"])
        names.update(p["metadata"]["name"] for p in pods)
        return any(p["status"].get("phase") == "Running" for p in pods)

    sim.wait_for(running_pods, 120, "the job's executor pod, labelled with it, running")
    done = kube_server.wait(job["id"])
    assert done["state"] == "SUCCEEDED", kube_server.log(job["id"])
    assert done["start_type"] == "warm", done
    assert "Pi is roughly 3.1" in kube_server.log(job["id"])
    assert len(names) == 1 and next(iter(names)).startswith("chidori-warm-"), names
    sim.wait_for(lambda: not sim.pods_of(job["id"]), 30, "executor pods deleted")
