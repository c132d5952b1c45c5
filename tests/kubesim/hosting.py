"""The simulated cluster as Chidori's Kubernetes tests and benchmark use it: two nodes of pool
`spark`, the pod that hosts Chidori (Running and Ready at 127.0.0.1, as a Deployment's pod
named by the downward API: executors get an owner reference to it) and the drivers' service
account (the server mints their tokens)."""

from __future__ import annotations

from tests.kubesim.apiserver import FakeKubernetes

NAMESPACE = "default"
HOST_POD = "chidori-0"
NODES = ("node-a", "node-b")
DRIVER_ACCOUNT = "chidori-driver"


def host_chidori(api: FakeKubernetes) -> None:
    for node in NODES:
        api.add_node(node, cpu="4", memory="8Gi", labels={"pool": "spark"})
    api.create(
        "pods",
        {
            "metadata": {"name": HOST_POD, "namespace": NAMESPACE},
            "spec": {"containers": [{"name": "chidori", "image": "chidori:test"}]},
        },
        NAMESPACE,
    )
    # Ready as well as Running: Spark's executor allocator waits up to 1 s for the driver pod.
    api.update_status(
        "pods",
        HOST_POD,
        {
            "phase": "Running",
            "podIP": "127.0.0.1",
            "conditions": [{"type": "Ready", "status": "True"}],
        },
        NAMESPACE,
    )
    api.create("serviceaccounts", {"metadata": {"name": DRIVER_ACCOUNT}}, NAMESPACE)
