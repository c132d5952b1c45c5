"""The monitoring UI in a real browser (Debian's chromium through Playwright) against a live
server with real finished jobs: filters, the job page and its log, the History Server link,
the dataset chart, share links (fresh context, tampered, expired, revoked).

Screenshots of each page go to tests/artifacts/.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.server import REPO, ChidoriServer

CHROMIUM = os.environ.get("CHIDORI_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
ARTIFACTS = REPO / "tests" / "artifacts"
HISTORY_SERVER_URL = "http://127.0.0.1:18080"
BACKDATED = "2024-01-15 10:00:00.000000"  # one job is moved to this day to test the date filter


@dataclass
class Jobs:
    train: list[dict[str, Any]]
    crash: list[dict[str, Any]]
    other: dict[str, Any]
    pi: dict[str, Any]
    backdated: int

    @property
    def dataset_runs(self) -> list[dict[str, Any]]:
        return self.train + self.crash


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChidoriServer]:
    home = tmp_path_factory.mktemp("ui-browser")
    env = {"CHIDORI_HISTORY_SERVER_URL": HISTORY_SERVER_URL}
    with ChidoriServer(home, env=env) as running:
        yield running


@pytest.fixture(scope="module")
def jobs(ui_server: ChidoriServer) -> Jobs:
    """Real finished jobs: trainings and crashes of one dataset, one job of another dataset
    (moved to an old day), and one real Spark pi job."""
    pi = ui_server.submit(application="examples/pi.py", name="pi", args=["2"])
    dataset = {"schema": "ml", "table": "model"}
    train = [
        ui_server.submit(
            kind="python",
            application="examples/train.py",
            name=f"train-{n}",
            args=["--epochs", str(5 + 10 * n)],
            **dataset,
        )
        for n in range(3)
    ]
    crash = [
        ui_server.submit(
            kind="python", application="tests/jobs/crash.py", name=f"crash-{n}", **dataset
        )
        for n in range(2)
    ]
    other = ui_server.submit(
        kind="python",
        application="examples/train.py",
        name="old-report",
        schema="sales",
        table="daily",
    )
    finished = [ui_server.wait(job["id"]) for job in [*train, *crash, other]]
    expected = ["SUCCEEDED"] * 3 + ["FAILED"] * 2 + ["SUCCEEDED"]
    assert [j["state"] for j in finished] == expected, [(j["id"], j["reason"]) for j in finished]
    with sqlite3.connect(ui_server.home / "chidori.db") as db:
        db.execute("UPDATE jobs SET created_at = ? WHERE id = ?", (BACKDATED, other["id"]))
    pi_done = ui_server.wait(pi["id"])
    assert pi_done["state"] == "SUCCEEDED", ui_server.log(pi["id"])
    return Jobs(finished[:3], finished[3:5], finished[5], pi_done, other["id"])


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def page(browser: Browser, ui_server: ChidoriServer, jobs: Jobs) -> Iterator[Page]:
    """A signed-in admin page (one context for the module)."""
    context = browser.new_context(
        base_url=ui_server.url, viewport={"width": 1400, "height": 900}, accept_downloads=True
    )
    signed_in = context.new_page()
    signed_in.goto("/ui")
    assert "/ui/login" in signed_in.url
    signed_in.get_by_label("API token").fill(ui_server.token)
    signed_in.get_by_role("button", name="Sign in").click()
    signed_in.wait_for_url("**/ui")
    yield signed_in
    context.close()


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def listed_ids(page: Page) -> list[int]:
    cells = page.locator("#job-rows tr td:first-child a").all_inner_texts()
    return [int(cell) for cell in cells]


def open_filters(page: Page) -> None:
    """The filter bar is collapsed until opened (or while no filter is set)."""
    if page.locator("#filters").get_attribute("open") is None:
        page.locator("#filters > summary").click()


def apply_filters(page: Page, **fields: str) -> list[int]:
    page.goto("/ui")
    open_filters(page)
    for name, value in fields.items():
        page.locator(f"#f-{name}").fill(value)
    page.get_by_role("button", name="Apply filters").click()
    page.wait_for_load_state()
    return listed_ids(page)


def test_filters_show_exactly_the_matching_jobs(page: Page, jobs: Jobs) -> None:
    page.goto("/ui")
    everything = listed_ids(page)
    assert everything == sorted(everything, reverse=True)  # newest first
    assert len(everything) == 7
    shot(page, "jobs")

    open_filters(page)
    page.get_by_label("Failed").check()
    page.get_by_role("button", name="Apply filters").click()
    page.wait_for_load_state()
    assert "state=FAILED" in page.url  # bookmarkable
    assert sorted(listed_ids(page)) == sorted(j["id"] for j in jobs.crash)
    page.get_by_label("Succeeded").check()
    page.get_by_role("button", name="Apply filters").click()
    page.wait_for_load_state()
    assert len(listed_ids(page)) == 7  # both states at once

    assert apply_filters(page, **{"from": "2024-01-15", "to": "2024-01-15"}) == [jobs.backdated]
    assert jobs.backdated not in apply_filters(page, **{"from": time.strftime("%Y-%m-%d")})
    matching = apply_filters(page, schema="ml", table="model")
    assert sorted(matching) == sorted(j["id"] for j in jobs.dataset_runs)
    assert apply_filters(page, schema="sales") == [jobs.backdated]
    assert apply_filters(page, q="crash-1") == [jobs.crash[1]["id"]]

    page.goto("/ui?order=oldest")
    assert listed_ids(page) == sorted(everything)
    page.goto("/ui?limit=25&state=SUCCEEDED&state=FAILED")
    assert page.locator("#f-limit").input_value() == "25"


def test_the_job_page_shows_the_log_and_downloads_all_of_it(
    page: Page, ui_server: ChidoriServer, jobs: Jobs, tmp_path: Path
) -> None:
    job = jobs.train[2]
    page.goto(f"/ui/jobs/{job['id']}")
    log = page.locator("#log-text")
    expect(log).to_contain_text("accuracy:")
    page.locator("#log-search").fill("epoch 1/")
    expect(page.locator("#log-text mark")).to_have_count(1)
    assert page.locator("#cancel-job").count() == 0  # finished: nothing to cancel
    expect(page.locator("#dataset-link")).to_have_attribute(
        "href", "/ui/history?schema=ml&table=model"
    )
    shot(page, "job")

    with page.expect_download() as download:
        page.locator("#log-download").click()
    saved = tmp_path / "driver.log"
    download.value.save_as(saved)
    assert saved.read_text() == ui_server.log(job["id"])
    assert "epoch 25/25" in saved.read_text()

    crash = jobs.crash[0]
    page.goto(f"/ui/jobs/{crash['id']}")
    expect(page.locator("#log-text")).to_contain_text("crash.py failed on purpose")
    expect(page.locator("#job-reason")).to_be_visible()


def test_the_history_server_link_opens_the_spark_application(page: Page, jobs: Jobs) -> None:
    app_id = jobs.pi["spark_app_id"]
    assert app_id and str(app_id).startswith("local-")
    page.goto(f"/ui/jobs/{jobs.pi['id']}")
    link = page.locator("#history-server-link")
    expect(link).to_have_attribute("href", f"{HISTORY_SERVER_URL}/history/{app_id}/jobs/")
    expect(page.locator("#log-text")).to_contain_text("Pi is roughly")
    shot(page, "job-spark")


def test_the_dataset_chart_has_one_point_per_run(
    page: Page, ui_server: ChidoriServer, jobs: Jobs
) -> None:
    with ui_server.client() as client:
        runs = client.get("/api/v1/history", params={"schema": "ml", "table": "model"}).json()
    assert [r["id"] for r in runs["items"]] == sorted(
        (j["id"] for j in jobs.dataset_runs), reverse=True
    )
    assert all(r["duration_seconds"] is not None for r in runs["items"])
    page.goto("/ui/history?schema=ml&table=model")
    page.wait_for_function("window.chidoriHistoryChart !== undefined")
    points = page.evaluate(
        """() => {
            const chart = Chart.getChart(document.getElementById('history-chart'));
            return chart.data.datasets.flatMap(d => d.data.map(p => ({
                id: p.run.id, state: d.label, y: p.y})));
        }"""
    )
    assert sorted(p["id"] for p in points) == sorted(j["id"] for j in jobs.dataset_runs)
    by_id = {r["id"]: r for r in runs["items"]}
    for point in points:
        assert point["state"].upper() == by_id[point["id"]]["state"]
        assert point["y"] == pytest.approx(by_id[point["id"]]["duration_seconds"])
    shot(page, "history-chart")
    page.get_by_role("button", name="Table").click()
    expect(page.locator("#runs-table tbody tr")).to_have_count(len(jobs.dataset_runs))
    expect(page.locator("#history-chart")).to_be_hidden()
    shot(page, "history-table")


def test_the_queues_page_shows_capacity_queues_and_servers(page: Page) -> None:
    page.goto("/ui/queues")
    expect(page.locator("#capacity-table")).to_contain_text("All clusters")
    expect(page.locator("#queues-table")).to_contain_text("default")
    expect(page.locator("#servers-table")).to_contain_text("alive")
    shot(page, "queues")


def create_share(page: Page, path: str, lifetime: str | None = None) -> str:
    page.goto(path)
    if lifetime is not None:
        page.locator("#share-lifetime").fill(lifetime)
    page.locator("#share-create").click()
    url = page.locator("#share-url").input_value()
    assert "/s/" in url
    return url


def test_share_links_open_without_login_and_bad_ones_are_refused(
    page: Page, browser: Browser, ui_server: ChidoriServer, jobs: Jobs
) -> None:
    job = jobs.train[0]
    job_link = create_share(page, f"/ui/jobs/{job['id']}")
    shot(page, "share-created")
    dataset_link = create_share(page, "/ui/history?schema=ml&table=model")
    short_link = create_share(page, f"/ui/jobs/{job['id']}", lifetime="1s")
    created = time.monotonic()

    stranger = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        anonymous = stranger.new_page()
        response = anonymous.goto(job_link)
        assert response is not None and response.status == 200
        expect(anonymous.locator("h1")).to_contain_text(job["name"])
        expect(anonymous.locator("#log-text")).to_contain_text("accuracy:")
        assert anonymous.locator("#cancel-job, #share-create").count() == 0
        href = anonymous.locator("#log-download").get_attribute("href") or ""
        assert href.startswith("/s/") and href.endswith("/log/download")
        assert stranger.cookies() == []  # nothing signed in
        shot(anonymous, "shared-job")
        download = httpx.get(job_link + "/log/download")
        assert download.status_code == 200 and download.text == ui_server.log(job["id"])
        assert httpx.get(f"{ui_server.url}/api/v1/jobs/{job['id']}").status_code == 401

        anonymous.goto(dataset_link)
        anonymous.wait_for_function("window.chidoriHistoryChart !== undefined")
        count = anonymous.evaluate(
            "() => window.chidoriHistoryChart.data.datasets.reduce((n, d) => n + d.data.length, 0)"
        )
        assert count == len(jobs.dataset_runs)

        body, _, mac = job_link.rpartition("/s/")[2].partition(".")
        tampered = f"{ui_server.url}/s/{body[:-1]}{'A' if body[-1] != 'A' else 'B'}.{mac}"
        refused = anonymous.goto(tampered)
        assert refused is not None and refused.status == 404
        expect(anonymous.locator("h1")).to_have_text("This link is not valid")
        assert job["name"] not in anonymous.content()
        shot(anonymous, "share-refused")
        assert httpx.get(tampered + "/log").status_code == 404

        time.sleep(max(0.0, 1.5 - (time.monotonic() - created)))
        expired = anonymous.goto(short_link)
        assert expired is not None and expired.status == 404
        assert httpx.get(short_link + "/log/download").status_code == 404

        page.goto("/ui/shares")
        shot(page, "shares")
        page.on("dialog", lambda dialog: dialog.accept())
        page.locator("#shares-table tbody tr").filter(has_text="ml.model history").get_by_role(
            "button", name="Revoke"
        ).click()
        expect(page.locator(".notice")).to_contain_text("revoked")
        revoked = anonymous.goto(dataset_link)
        assert revoked is not None and revoked.status == 404
        assert httpx.get(job_link).status_code == 200  # the others still work
    finally:
        stranger.close()


def test_chidori_history_server_lists_the_pi_application(
    ui_server: ChidoriServer, jobs: Jobs, tmp_path: Path
) -> None:
    """`chidori history-server` serves the event logs the hosted driver wrote."""
    port = 18000 + os.getpid() % 1000
    env = {**ui_server.environment(), "CHIDORI_HOME": str(ui_server.home)}
    process = subprocess.Popen(
        [sys.executable, "-m", "chidori", "history-server", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=open(tmp_path / "history-server.log", "wb"),  # noqa: SIM115
        cwd=REPO,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().decode().strip() == f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 40
        listed: list[str] = []
        while time.monotonic() < deadline and jobs.pi["spark_app_id"] not in listed:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/api/v1/applications", timeout=2)
                listed = [app["id"] for app in answer.json()] if answer.status_code == 200 else []
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.5)
        assert jobs.pi["spark_app_id"] in listed, (tmp_path / "history-server.log").read_text()
    finally:
        os.killpg(process.pid, 15)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()
