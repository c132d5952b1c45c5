"""Livy's Spark UI link: a managed Livy (the fake of tests/fakes/livy_batches.py, since
Chidori's own Livy API names none) answers `appInfo.sparkUiUrl` once the batch runs; the
watch keeps it on the attempt (`remote_url`) and the job page links it as "Spark UI
(service)" instead of Chidori's own History Server, which never sees these applications.
A page that is not http(s) is neither kept nor linked. No Spark runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.fakes.livy_batches import FakeLivy, serve_fake_livy
from tests.server import ChidoriServer
from tests.test_ui_login import sign_in


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeLivy]:
    with serve_fake_livy() as running:
        yield running


@pytest.fixture(scope="module")
def server(fake: FakeLivy, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChidoriServer]:
    home = tmp_path_factory.mktemp("livy-ui")
    config = home.parent / f"{home.name}.yaml"
    config.write_text(
        "history_server_url: http://127.0.0.1:18080\n"
        f"clusters:\n  lv:\n    type: livy\n    url: {fake.url}\n    poll_seconds: 0.3\n"
    )
    with ChidoriServer(home, config=config) as running:
        yield running


def _attempt(server: ChidoriServer, job_id: int) -> dict[str, Any]:
    with server.client() as client:
        (attempt,) = client.get(f"/api/v1/jobs/{job_id}/attempts").json()["items"]
    assert isinstance(attempt, dict)
    return attempt


def _page(server: ChidoriServer, job_id: int) -> str:
    with sign_in(server, server.token) as browser:
        return str(browser.get(f"/ui/jobs/{job_id}").text)


def test_the_services_spark_ui_is_kept_and_linked(server: ChidoriServer, fake: FakeLivy) -> None:
    fake.scripts.append(["starting", "starting", "running", "running", "success"])
    job = server.submit(application="hdfs:///apps/pi.py", cluster="lv")
    done = server.wait(job["id"], timeout=30)
    assert done["state"] == "SUCCEEDED", done
    assert done["spark_app_id"] == f"application_1700000000000_{len(fake.batches) - 1:04d}"
    attempt = _attempt(server, job["id"])
    assert attempt["remote_url"] == f"http://rm.example:8088/proxy/{done['spark_app_id']}/"
    page = _page(server, job["id"])
    assert f'<a href="{attempt["remote_url"]}" id="service-spark-ui"' in page
    assert "Spark UI (service)" in page
    assert 'id="history-server-link"' not in page  # Chidori's own knows nothing of it


def test_a_spark_ui_that_is_not_http_is_not_linked(server: ChidoriServer, fake: FakeLivy) -> None:
    fake.spark_ui = "javascript:alert(1)//{app_id}"
    try:
        job = server.submit(application="hdfs:///apps/pi.py", cluster="lv")
        assert server.wait(job["id"], timeout=30)["state"] == "SUCCEEDED"
    finally:
        fake.spark_ui = "http://rm.example:8088/proxy/{app_id}/"
    assert _attempt(server, job["id"])["remote_url"] is None
    page = _page(server, job["id"])
    assert "javascript:" not in page and 'id="service-spark-ui"' not in page
