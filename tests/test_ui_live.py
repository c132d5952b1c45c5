"""Live UI pages in a real browser (Debian's chromium through Playwright) against one live
server: the job page follows its job (RUNNING to SUCCEEDED, Cancel to CANCELLED) without a
reload, elapsed time ticks, the jobs list picks up new jobs and patches rows without losing
focus, State and Duration stay on screen at 390 px, attempt tabs show each attempt's log, an
unknown /ui URL answers an HTML 404, and axe-core finds no serious violation.

Python jobs, plus one Spark job whose stage progress moves on the job page and in the list, and
whose summary (stages, durations, shuffle bytes) stays after the end, through a share link too.
The jobs list's counts, previous/next pages, label filter and duration sort; the queues page
patched in place.
"""

from __future__ import annotations

import re
import time
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
    for n in range(2):  # each attempt's own duration, log tab and download
        expect(attempts.nth(n).locator("td.num")).to_have_text(re.compile(r"^\d+\.\d s$"))
        link = attempts.nth(n).get_by_role("link", name="download")
        assert link.get_attribute("href") == (
            f"/api/v1/jobs/{job['id']}/attempts/{n + 1}/logs/download"
        )
    # The whole job's log, reached from the page with the page's own session.
    whole_link = page.locator("#whole-log").get_attribute("href") or ""
    assert whole_link == f"/api/v1/jobs/{job['id']}/logs/all"
    from_page = page.request.get(live_server.url + whole_link)
    assert from_page.status == 200
    assert from_page.text().index("===== attempt 1") < from_page.text().index("===== attempt 2")
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


def test_the_queues_page_follows_its_queues_in_place(
    page: Page, live_server: ChidoriServer
) -> None:
    settle(live_server)
    page.goto("/ui/queues")
    mark_no_reload(page)
    expect(page.locator("#warm-held")).to_have_text("No warm driver holds capacity now.")
    row = page.locator('#queue-rows tr[data-key="queue-default"]')
    expect(row.locator(".queue-running")).to_have_text("0")
    reserved_jobs = page.locator("#capacity-rows tr").first.locator("td").nth(1)
    expect(reserved_jobs).to_have_text("0")
    row.locator("th a").focus()
    job = sleeper(live_server, 60, name="seen-by-the-queues-page")
    live_server.wait(job["id"], until={"RUNNING"}, timeout=60)
    expect(row.locator(".queue-running")).to_have_text("1", timeout=10_000)
    expect(reserved_jobs).to_have_text("1")
    # The row was patched (new counts) and its link has the focus again.
    assert page.evaluate("document.activeElement.closest('tr').dataset.key") == "queue-default"
    with live_server.client() as client:
        client.delete(f"/api/v1/jobs/{job['id']}")
    live_server.wait(job["id"])
    expect(row.locator(".queue-running")).to_have_text("0", timeout=10_000)
    expect(page.locator("#queues-status")).to_contain_text("Live")
    assert_not_reloaded(page)
    assert serious_violations(page) == []
    with live_server.client() as client:  # the live sections need a UI session
        assert client.get("/ui/queues/live").status_code == 401


def test_api_docs_need_nothing_from_outside(live_server: ChidoriServer) -> None:
    docs = httpx.get(live_server.url + "/docs")
    assert docs.status_code == 200
    assert "https://" not in docs.text and "http://" not in docs.text.replace(live_server.url, "")
    for asset in ("/docs/files/swagger-ui-bundle.js", "/docs/files/swagger-ui.css"):
        assert asset in docs.text
        assert httpx.get(live_server.url + asset).status_code == 200


def listed_ids(page: Page) -> list[int]:
    ids: list[str] = page.locator("#job-rows tr[data-id]").evaluate_all(
        "rows => rows.map(r => r.dataset.id)"
    )
    return [int(i) for i in ids]


def test_the_list_counts_pages_filters_by_label_and_sorts_by_duration(
    page: Page, live_server: ChidoriServer
) -> None:
    labels = {"suite": f"paging-{time.time_ns()}"}
    longest = sleeper(live_server, 2.5, name="longest", labels=labels)
    crash = live_server.submit(
        kind="python", application="tests/jobs/crash.py", name="crashes", labels=labels
    )
    short = [sleeper(live_server, 0.1, name=f"short-{n}", labels=labels) for n in range(9)]
    other = sleeper(live_server, 0.1, name="unlabelled")
    for job in (longest, crash, *short, other):
        live_server.wait(job["id"])
    page.goto("/ui")
    bar = page.locator("details#filters")
    assert bar.get_attribute("open") is None  # folded while no filter is set
    bar.locator("summary").click()
    page.locator("#f-label").fill(f"suite:{labels['suite']}")
    page.locator("#f-limit").select_option("10")
    page.get_by_role("button", name="Apply filters").click()
    page.wait_for_url("**/ui?*label=*")
    newest = sorted((j["id"] for j in (crash, *short)), reverse=True)
    assert listed_ids(page) == newest  # the 10 newest labelled jobs, not the unlabelled one
    expect(page.locator("#state-counts")).to_have_text("9 SUCCEEDED 1 FAILED")
    assert page.locator("details#filters").get_attribute("open") is not None
    expect(page.locator("#filters summary")).to_contain_text("1 set")
    page.locator("#page-next").click()
    expect(page.locator("#job-rows tr[data-id]")).to_have_count(1)
    assert listed_ids(page) == [longest["id"]]
    expect(page.locator("#state-counts")).to_have_text("1 SUCCEEDED")
    expect(page.locator("#page-next")).to_have_count(0)
    page.locator("#page-previous").click()
    expect(page.locator("#job-rows tr[data-id]")).to_have_count(10)
    assert listed_ids(page) == newest
    expect(page.locator("#page-previous")).to_have_count(0)
    # Sorting by duration (the header link): the longest job first.
    page.locator("#f-limit").select_option("25")
    page.get_by_role("button", name="Apply filters").click()
    expect(page.locator("#job-rows tr[data-id]")).to_have_count(11)
    assert listed_ids(page)[-1] == longest["id"]
    page.get_by_role("link", name="Duration").click()
    page.wait_for_url("**sort=duration*")
    assert listed_ids(page)[0] == longest["id"]
    assert serious_violations(page) == []


@pytest.mark.spark
def test_a_running_spark_job_shows_moving_progress_and_keeps_its_summary(
    browser: Browser, page: Page, desktop: BrowserContext, live_server: ChidoriServer
) -> None:
    settle(live_server)  # this job alone on the machine: its stages move at their own pace
    job = live_server.submit(
        application="tests/jobs/spark_stages.py", args=["1.0", "6"], name="ui-stages"
    )
    live_server.wait(job["id"], until={"RUNNING"}, timeout=120)
    page.goto(f"/ui/jobs/{job['id']}")
    mark_no_reload(page)
    # Every value the page's bar takes, as the live polling patches it.
    page.evaluate(
        """() => {
        window.__seen = [];
        const note = () => {
          const bar = document.querySelector('#live-progress progress');
          if (bar) window.__seen.push(Number(bar.getAttribute('value')));
        };
        new MutationObserver(note).observe(
          document.getElementById('live-progress'), {childList: true, subtree: true});
        note();
      }"""
    )
    bar = page.locator("#live-progress progress.spark-progress")
    expect(bar).to_be_visible(timeout=90_000)
    listing = desktop.new_page()  # the list shows the same job's bar while it runs
    listing.goto("/ui")
    compact = listing.locator(f"#job-row-{job['id']} td.state-cell progress.spark-progress")
    if page.locator("#job-state").inner_text() == "RUNNING":
        expect(compact).to_be_attached()
    listing.close()
    expect(page.locator("#job-state")).to_have_text("SUCCEEDED", timeout=120_000)
    seen: list[int] = page.evaluate("window.__seen")
    assert len(set(seen)) >= 3 and seen == sorted(seen), seen  # it moved, forwards
    expect(page.locator("#live-progress h2")).to_have_text("Spark progress (summary)")
    assert bar.get_attribute("value") == bar.get_attribute("max") == "18"
    stages = page.locator("#stage-table tbody tr")
    expect(stages).to_have_count(3)
    header = page.locator("#stage-table thead th").all_inner_texts()
    write = stages.nth(0).locator("td").nth(header.index("Shuffle write"))
    expect(write).to_have_text(re.compile(r"\d"))
    read = stages.nth(1).locator("td").nth(header.index("Shuffle read"))
    expect(read).to_have_text(re.compile(r"\d"))
    expect(stages.nth(0).locator("td").nth(header.index("Duration"))).to_have_text(
        re.compile(r"^\d+\.\d s$")
    )
    assert_not_reloaded(page)
    assert serious_violations(page) == []
    with live_server.client() as client:
        url = client.post(f"/api/v1/jobs/{job['id']}/share", json={}).json()["url"]
    anonymous = browser.new_context(viewport={"width": 1400, "height": 900})  # no session
    try:
        shared = anonymous.new_page()
        shared.goto(url)
        expect(shared.locator("#live-progress h2")).to_have_text("Spark progress (summary)")
        expect(shared.locator("#stage-table tbody tr")).to_have_count(3)
        assert serious_violations(shared) == []
        shot(shared, "ui-live-spark-summary-shared")
    finally:
        anonymous.close()


def test_the_sign_in_shares_and_empty_history_pages_are_axe_clean(
    browser: Browser, page: Page, live_server: ChidoriServer
) -> None:
    for path, heading in (("/ui/shares", "Share links"), ("/ui/history", "Dataset history")):
        page.goto(path)
        expect(page.locator("h1")).to_contain_text(heading)
        assert serious_violations(page) == [], path
    anonymous = browser.new_context(base_url=live_server.url)
    try:
        login = anonymous.new_page()
        login.goto("/ui/jobs/1")  # signed out: the sign-in page, which comes back after
        expect(login.get_by_label("API token")).to_be_visible()
        assert serious_violations(login) == []
    finally:
        anonymous.close()
