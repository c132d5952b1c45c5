"""The Livy batch API through a real Livy client (pylivy, the `livy` package), running a real
Spark job; and Livy's own error shapes."""

from __future__ import annotations

import httpx
import pytest
from livy import LivyBatch, SessionState

from tests.server import ChidoriServer


@pytest.mark.spark
def test_pylivy_runs_a_batch_and_reads_its_log(server: ChidoriServer) -> None:
    batch = LivyBatch.create(
        server.url, file="examples/pi.py", args=["2"], name="pi-through-livy",
        auth=("livy-user", server.token), driver_memory="1g",
    )  # fmt: skip
    assert batch.wait() is SessionState.SUCCESS
    assert any("Pi is roughly 3.1" in line for line in batch.log())
    with server.client() as client:
        job = client.get(f"/api/v1/jobs/{batch.batch_id}").json()
    assert job["name"] == "pi-through-livy" and job["state"] == "SUCCEEDED"
    assert job["labels"] == {"submitted-through": "livy"}
    batches = httpx.get(f"{server.url}/batches", auth=("x", server.token)).json()
    assert batch.batch_id in [b["id"] for b in batches["sessions"]]


def test_livy_errors_use_livy_shapes(server: ChidoriServer) -> None:
    auth = ("x", server.token)
    missing = httpx.get(f"{server.url}/batches/987654", auth=auth)
    assert missing.status_code == 404 and missing.json() == {"msg": "Session '987654' not found."}
    bad = httpx.post(f"{server.url}/batches", json={"className": "X"}, auth=auth)
    assert bad.status_code == 400 and "file" in bad.json()["msg"]
    nowhere = httpx.post(f"{server.url}/batches", json={"file": "/etc/passwd"}, auth=auth)
    assert nowhere.status_code == 400 and "outside the allowed" in nowhere.json()["msg"]
    anonymous = httpx.get(f"{server.url}/batches")
    assert anonymous.status_code == 401 and "msg" in anonymous.json()


def test_a_livy_batch_can_be_killed(server: ChidoriServer) -> None:
    auth = ("x", server.token)
    created = httpx.post(
        f"{server.url}/batches", json={"file": "tests/jobs/spark_sleep.py"}, auth=auth
    )
    assert created.status_code == 201 and created.json()["state"] in ("starting", "running")
    batch_id = created.json()["id"]
    assert httpx.delete(f"{server.url}/batches/{batch_id}", auth=auth).json() == {"msg": "deleted"}
    assert server.wait(batch_id, timeout=60)["state"] == "CANCELLED"
    state = httpx.get(f"{server.url}/batches/{batch_id}/state", auth=auth).json()
    assert state == {"id": batch_id, "state": "killed"}
