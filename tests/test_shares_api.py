"""Share links through the API: created, listed, revoked, verified; never a way in elsewhere."""

from __future__ import annotations

import httpx

from tests.server import ChidoriServer


def test_a_job_share_link_is_signed_expiring_listed_and_revocable(server: ChidoriServer) -> None:
    job = server.submit(kind="python", application="examples/train.py", name="shared")
    server.wait(job["id"])
    with server.client() as client:
        made = client.post(f"/api/v1/jobs/{job['id']}/share", json={"expires_in": "24h"})
        assert made.status_code == 201, made.text
        link = made.json()
        assert link["url"].startswith(f"{server.url}/s/") and link["job_id"] == job["id"]
        listed = client.get("/api/v1/shares").json()["items"]
        assert link["id"] in [s["id"] for s in listed]
        assert client.delete(f"/api/v1/shares/{link['id']}").json()["revoked_at"]
        assert (
            client.post(f"/api/v1/jobs/{job['id']}/share", json={"expires_in": "100d"}).status_code
            == 422
        )
        assert client.post("/api/v1/jobs/987654/share", json={}).status_code == 404


def test_a_dataset_share_names_schema_and_table(server: ChidoriServer) -> None:
    with server.client() as client:
        made = client.post("/api/v1/shares", json={"schema": "sales", "table": "orders"})
        assert made.status_code == 201, made.text
        assert made.json()["schema"] == "sales" and made.json()["kind"] == "dataset"
        assert client.post("/api/v1/shares", json={"schema": "sales"}).status_code == 422


def test_a_share_token_is_not_an_api_credential(server: ChidoriServer) -> None:
    job = server.submit(kind="python", application="examples/train.py")
    with server.client() as client:
        url = client.post(f"/api/v1/jobs/{job['id']}/share", json={}).json()["url"]
    token = url.rsplit("/", 1)[1]
    response = httpx.get(f"{server.url}/api/v1/jobs", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
