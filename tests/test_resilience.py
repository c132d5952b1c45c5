"""Losing the database: the server answers not ready while PostgreSQL cannot be reached and
recovers by itself, without a restart, once it can (connections cut by a TCP proxy)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from sqlalchemy.engine import make_url

from tests.server import ChidoriServer
from tests.test_queue_contract import TcpProxy


def wait_for_status(server: ChidoriServer, status: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            current = httpx.get(f"{server.url}/readyz", timeout=5).status_code
        except httpx.HTTPError:
            current = -1
        if current == status:
            return
        assert time.monotonic() < deadline, f"/readyz answered {current}, wanted {status}"
        time.sleep(0.2)


def test_the_server_reports_not_ready_without_its_database_and_recovers(
    postgres_schema_url: str, tmp_path: Path
) -> None:
    url = make_url(postgres_schema_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    through_proxy = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    with ChidoriServer(tmp_path / "home", env={"CHIDORI_DATABASE_URL": through_proxy}) as server:
        first = server.submit(kind="python", application="examples/train.py")
        assert server.wait(first["id"])["state"] == "SUCCEEDED"
        proxy.cut()
        wait_for_status(server, 503, timeout=20)
        with server.client() as client:
            refused = client.get("/api/v1/jobs")
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "store_unavailable"
        proxy.resume()
        wait_for_status(server, 200, timeout=30)
        again = server.submit(kind="python", application="examples/train.py")
        assert server.wait(again["id"])["state"] == "SUCCEEDED"
        assert server.process is not None and server.process.poll() is None  # never restarted
