"""The `kubernetes` cluster type against a real cluster (kind or any), when
CHIDORI_TEST_KUBECONFIG names its kubeconfig; skipped otherwise. Steps: docs/kubernetes.md
("Against a real cluster"). The server runs here, outside the cluster; executors must reach
its drivers at CHIDORI_TEST_DRIVER_HOST.

Variables: CHIDORI_TEST_KUBECONFIG (required), CHIDORI_TEST_KUBE_IMAGE (executor image, Spark
of the server's version with Python), CHIDORI_TEST_DRIVER_HOST (this machine's address as pods
see it), CHIDORI_TEST_KUBE_POD (a pod standing for Chidori's, owner of the executors),
CHIDORI_TEST_KUBE_NAMESPACE (default `default`), CHIDORI_TEST_KUBE_DRIVER_ACCOUNT (default
`chidori-driver`).
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.server import ChidoriServer

KUBECONFIG = os.environ.get("CHIDORI_TEST_KUBECONFIG")
pytestmark = [
    pytest.mark.kubernetes,
    pytest.mark.spark,
    pytest.mark.skipif(not KUBECONFIG, reason="CHIDORI_TEST_KUBECONFIG is not set"),
]
NAMESPACE = os.environ.get("CHIDORI_TEST_KUBE_NAMESPACE", "default")


@pytest.fixture(scope="module")
def real_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ChidoriServer, str]]:
    home = tmp_path_factory.mktemp("kube-real")
    installation = f"test-{secrets.token_hex(3)}"
    config = home / "chidori.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "clusters": {
                    "k8s": {
                        "type": "kubernetes",
                        "kubeconfig": str(Path(str(KUBECONFIG)).resolve()),
                        "namespace": NAMESPACE,
                        "image": os.environ.get("CHIDORI_TEST_KUBE_IMAGE", "apache/spark:4.3.0"),
                        "driver_service_account": os.environ.get(
                            "CHIDORI_TEST_KUBE_DRIVER_ACCOUNT", "chidori-driver"
                        ),
                        "installation": installation,
                        "executor": {"memory": "512m", "pending_timeout": "5m"},
                    }
                }
            }
        )
    )
    env = {
        "POD_NAME": os.environ.get("CHIDORI_TEST_KUBE_POD", ""),
        "POD_IP": os.environ.get("CHIDORI_TEST_DRIVER_HOST", ""),
    }
    with ChidoriServer(home, config=config, env={k: v for k, v in env.items() if v}) as server:
        yield server, installation


def test_pi_on_a_real_cluster_leaves_nothing_behind(
    real_server: tuple[ChidoriServer, str],
) -> None:
    from kubernetes import client, config

    server, installation = real_server
    job = server.submit(
        cluster="k8s", application="examples/pi.py", executor_instances=2, executor_memory="512m"
    )
    done = server.wait(job["id"], timeout=900)
    assert done["state"] == "SUCCEEDED", server.log(job["id"])
    with server.client() as http:
        attempt = http.get(f"/api/v1/jobs/{job['id']}/attempts").json()["items"][-1]
    assert attempt["executors"], attempt
    config.load_kube_config(config_file=KUBECONFIG)  # type: ignore[no-untyped-call]
    core = client.CoreV1Api()
    selector = f"chidori.io/installation={installation},chidori.io/job={job['id']}"
    deadline = time.monotonic() + 60
    while core.list_namespaced_pod(NAMESPACE, label_selector=selector).items:
        assert time.monotonic() < deadline, "executor pods left behind"
        time.sleep(1)
