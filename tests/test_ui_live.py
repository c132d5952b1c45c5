"""Live UI pages in a real browser (Debian's chromium through Playwright) against one live
server: the job page follows its job (RUNNING to SUCCEEDED, Cancel to CANCELLED) without a
reload, elapsed time ticks, the jobs list picks up new jobs and patches rows without losing
focus, State and Duration stay on screen at 390 px, attempt tabs show each attempt's log, an
unknown /ui URL answers an HTML 404, and axe-core finds no serious violation.

Python jobs only (fast); Spark progress drawing is not tested here (see docs/ui.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from tests.server import ChidoriServer
from tests.test_ui_browser import CHROMIUM, CHROMIUM_ARGS, shot

LONG_NAME = "a-very-long-job-name-" + "that-keeps-going-" * 8 + "end"


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChidoriServer]:
    with ChidoriServer(tmp_path_factory.mktemp("ui-live")) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def signed_in(browser: Browser, server: ChidoriServer, width: int, height: int) -> BrowserContext:
    context = browser.new_context(base_url=server.url, viewport={"width": width, "height": height})
    page = context.new_page()
    page.goto("/ui")
    page.get_by_label("API token").fill(server.token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/ui")
    page.close()
    return context


@pytest.fixture(scope="module")
def desktop(browser: Browser, live_server: ChidoriServer) -> Iterator[BrowserContext]:
    context = signed_in(browser, live_server, 1400, 900)
    yield context
    context.close()


@pytest.fixture
def page(desktop: BrowserContext) -> Iterator[Page]:
    opened = desktop.new_page()
    opened.on("dialog", lambda dialog: dialog.accept())  # "Cancel job N?"
    yield opened
    opened.close()


def sleeper(server: ChidoriServer, seconds: float, **spec: Any) -> dict[str, Any]:
    return server.submit(
        kind="python", application="tests/jobs/sleeper.py", args=[str(seconds)], **spec
    )


def mark_no_reload(page: Page) -> None:
    """A value that lives only as long as this document: a reload would lose it."""
    page.evaluate("window.__notReloaded = true")


def assert_not_reloaded(page: Page) -> None:
    assert page.evaluate("window.__notReloaded === true"), "the page was reloaded"


def serious_violations(page: Page) -> list[str]:
    from axe_playwright_python.sync_playwright import Axe  # type: ignore[import-untyped]

    results = Axe().run(page)
    found = results.response["violations"]
    return [
        f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']][:3]}"
        for v in found
        if v["impact"] in ("serious", "critical")
    ]


def test_job_page_follows_its_job_to_succeeded(page: Page, live_server: ChidoriServer) -> None:
    job = sleeper(live_server, 5, name="live-success")
    live_server.wait(job["id"], until={"RUNNING"}, timeout=60)
    page.goto(f"/ui/jobs/{job['id']}")
    mark_no_reload(page)
    expect(page.locator("#job-state")).to_have_text("RUNNING")
    expect(page.locator("#cancel-job")).to_be_visible()
    # Elapsed time ticks while it runs (client-side, between the page's polls).
    elapsed = page.locator("#job-duration .elapsed")
    first = elapsed.inner_text()
    page.wait_for_timeout(1500)
    assert elapsed.inner_text() != first
    assert page.locator("#job-duration").inner_text() != "—"
    expect(page.locator("#job-state")).to_have_text("SUCCEEDED", timeout=30_000)
    expect(page.locator("#cancel-job")).to_have_count(0)
    expect(page.locator("#job-duration .elapsed")).to_have_count(0)
    duration = page.locator("#job-duration").inner_text()
    assert duration.endswith(" s") and duration != "—", duration
    expect(page.locator("#summary-state")).to_have_text("SUCCEEDED")
    expect(page.locator("#live-timeline")).to_contain_text("SUCCEEDED")
    assert_not_reloaded(page)
    assert serious_violations(page) == []
    shot(page, "ui-live-job-succeeded")


def test_cancel_lands_without_a_reload(page: Page, live_server: ChidoriServer) -> None:
    job = sleeper(live_server, 120, name="live-cancel")
    live_server.wait(job["id"], until={"RUNNING"}, timeout=60)
    page.goto(f"/ui/jobs/{job['id']}")
    mark_no_reload(page)
    expect(page.locator("#job-state")).to_have_text("RUNNING")
    assert serious_violations(page) == []
    page.locator("#cancel-job").click()
    expect(page.locator("#job-state")).to_have_text("CANCELLED", timeout=30_000)
    expect(page.locator("#cancel-job")).to_have_count(0)
    expect(page.locator("#summary-state")).to_have_text("CANCELLED")
    assert_not_reloaded(page)
    with live_server.client() as client:
        assert client.get(f"/api/v1/jobs/{job['id']}").json()["state"] == "CANCELLED"


def settle(server: ChidoriServer) -> list[int]:
    """Wait until every job so far has finished; their ids."""
    with server.client() as client:
        ids = [
            item["id"]
            for item in client.get("/api/v1/jobs", params={"limit": 1000}).json()["items"]
        ]
    for job_id in ids:
        server.wait(job_id)
    return ids


def test_list_shows_a_new_job_and_keeps_focus(page: Page, live_server: ChidoriServer) -> None:
    sleeper(live_server, 0.1, name="before-the-list")
    settle(live_server)
    page.goto("/ui")
    mark_no_reload(page)
    rows = page.locator("#job-rows tr[data-id]")
    assert rows.count() >= 1
    assert all(
        s in ("SUCCEEDED", "FAILED", "CANCELLED")
        for s in page.locator("#job-rows tr[data-id]").evaluate_all(
            "rs => rs.map(r => r.dataset.state)"
        )
    )
    # Focus a link of a row that does not change, then one that does.
    steady_id = int(rows.first.get_attribute("data-id") or 0)
    page.locator(f"#job-row-{steady_id} td.id a").focus()
    job = sleeper(live_server, 4, name="appears-while-open")
    expect(page.locator(f"#job-row-{job['id']}")).to_be_visible(timeout=5_000)
    assert page.evaluate("document.activeElement.closest('tr').id") == f"job-row-{steady_id}"
    page.locator(f"#job-row-{job['id']} td.name a").focus()
    row = page.locator(f"#job-row-{job['id']}")
    expect(row.locator(".state")).to_have_text("SUCCEEDED", timeout=30_000)
    # The row was replaced (new state) and its link has focus again.
    active = page.evaluate(
        "[document.activeElement.closest('tr').id, document.activeElement.closest('td').className]"
    )
    assert active == [f"job-row-{job['id']}", "name"]
    expect(page.locator("#state-counts")).to_contain_text("SUCCEEDED")
    assert_not_reloaded(page)
    assert serious_violations(page) == []


def test_list_columns_fit_at_1400_and_on_a_phone(
    browser: Browser, desktop: BrowserContext, live_server: ChidoriServer
) -> None:
    long = live_server.submit(kind="python", application="tests/jobs/crash.py", name=LONG_NAME)
    running = sleeper(live_server, 30, name="still-running")
    live_server.wait(long["id"])
    live_server.wait(running["id"], until={"RUNNING"}, timeout=60)
    phone = signed_in(browser, live_server, 390, 844)
    try:
        for context, width, label in ((desktop, 1400, "desktop"), (phone, 390, "phone")):
            page = context.new_page()
            page.goto("/ui")
            for job_id in (long["id"], running["id"]):
                row = page.locator(f"#job-row-{job_id}")
                for cell in ("td.state-cell .state", "td.duration"):
                    box = row.locator(cell).bounding_box()
                    assert box is not None, (label, job_id, cell)
                    assert box["x"] >= 0 and box["x"] + box["width"] <= width, (label, cell, box)
            name = page.locator(f"#job-row-{long['id']} td.name a")
            assert name.get_attribute("title") == LONG_NAME
            reason = (
                page.locator(f"#job-row-{long['id']} td.reason")
                if width > 760
                else page.locator(f"#job-row-{long['id']} .reason-inline")
            )
            expect(reason).to_contain_text("crash.py failed on purpose")
            box = reason.bounding_box()
            assert box is not None and box["x"] + box["width"] <= width, (label, box)
            # A running job's elapsed time ticks in the list too.
            elapsed = page.locator(f"#job-row-{running['id']} td.duration .elapsed")
            before = elapsed.inner_text()
            page.wait_for_timeout(1500)
            assert elapsed.inner_text() != before
            shot(page, f"ui-live-list-{label}")
            assert serious_violations(page) == []
            page.close()
    finally:
        phone.close()
        with live_server.client() as client:
            client.delete(f"/api/v1/jobs/{running['id']}")


def test_attempt_tabs_show_each_attempts_log(page: Page, live_server: ChidoriServer) -> None:
    job = live_server.submit(
        kind="python", application="tests/jobs/flaky.py", name="flaky", max_retries=1
    )
    done = live_server.wait(job["id"])
    assert done["state"] == "SUCCEEDED" and done["attempts"] == 2, done
    page.goto(f"/ui/jobs/{job['id']}")
    log = page.locator("#log-text")
    expect(log).to_contain_text("flaky attempt 2 speaking")
    expect(page.locator("#attempt-tab-2")).to_have_attribute("aria-current", "page")
    page.locator("#attempt-tab-1").click()
    expect(page.locator("#attempt-tab-1")).to_have_attribute("aria-current", "page")
    expect(log).to_contain_text("flaky attempt 1 speaking")
    expect(log).not_to_contain_text("attempt 2")
    download = page.locator("#log-download").get_attribute("href")
    assert download == f"/api/v1/jobs/{job['id']}/attempts/1/logs/download"
    page.locator("#attempt-tab-2").click()
    expect(log).to_contain_text("flaky succeeded")
    expect(log).not_to_contain_text("attempt 1 speaking")
    attempts = page.locator("#live-attempts tbody tr")
    expect(attempts).to_have_count(2)
    expect(attempts.nth(0)).to_contain_text("FAILED")
    assert serious_violations(page) == []
    with live_server.client() as client:
        whole = client.get(f"/api/v1/jobs/{job['id']}/logs/all")
        assert whole.status_code == 200
        text = whole.text
        one, two = text.index("===== attempt 1: FAILED"), text.index("===== attempt 2: SUCCEEDED")
        assert one < text.index("flaky attempt 1 speaking") < two
        assert two < text.index("flaky attempt 2 speaking")
        first = client.get(f"/api/v1/jobs/{job['id']}/attempts/1/logs")
        assert "flaky attempt 1 speaking" in first.text and "attempt 2" not in first.text
        missing = client.get(f"/api/v1/jobs/{job['id']}/attempts/3/logs")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
        bad = client.get(f"/api/v1/jobs/{job['id']}/attempts/0/logs")
        assert bad.status_code == 422 and "number" in bad.text
    page.goto(f"/ui/jobs/{job['id']}?attempt=9")
    expect(page.locator("h1")).to_have_text("Not found")


def test_unknown_ui_urls_answer_an_html_404(page: Page, live_server: ChidoriServer) -> None:
    for path in ("/ui/no-such-page", "/ui/jobs/1/nothing/here"):  # no route: signed in or not
        answer = httpx.get(live_server.url + path)
        assert answer.status_code == 404, path
        assert answer.headers["content-type"].startswith("text/html"), path
        assert "Not found" in answer.text
    for path in ("/ui/jobs/not-a-number", "/ui/jobs/0", "/ui/no/such/page"):  # signed in
        signed = page.request.get(live_server.url + path)
        assert signed.status == 404, path
        assert signed.headers["content-type"].startswith("text/html"), path
        assert "Not found" in signed.text()
    api = httpx.get(live_server.url + "/api/v1/no-such-thing")
    assert api.status_code == 404 and api.json()["error"]["code"] == "not_found"
    page.goto("/ui/no-such-page")
    expect(page.locator("h1")).to_have_text("Not found")
    assert serious_violations(page) == []


def test_queues_page_says_what_warm_drivers_hold(page: Page) -> None:
    page.goto("/ui/queues")
    expect(page.locator("#warm-held")).to_have_text("No warm driver holds capacity now.")
    assert serious_violations(page) == []


def test_api_docs_need_nothing_from_outside(live_server: ChidoriServer) -> None:
    docs = httpx.get(live_server.url + "/docs")
    assert docs.status_code == 200
    assert "https://" not in docs.text and "http://" not in docs.text.replace(live_server.url, "")
    for asset in ("/docs/files/swagger-ui-bundle.js", "/docs/files/swagger-ui.css"):
        assert asset in docs.text
        assert httpx.get(live_server.url + asset).status_code == 200
