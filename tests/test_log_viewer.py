"""The driver log viewer in Chromium: line permalinks (also through a share link), opening at
the first error, previous/next match with its position, only matching lines, the level filter,
wrap, and tracebacks that name the submitted file instead of the server's artifact path.

One server for the module and one Python job (fast): tests/jobs/levels.py, uploaded as
`levels.py`, logs 30 INFO/WARN lines and an ERROR line (11 of them hold "needle"), then a
traceback through its own file.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.server import REPO, ChidoriServer
from tests.ui_data_support import chromium, serious_violations, signed_in

LEVELS = REPO / "tests" / "jobs" / "levels.py"
NEEDLES = 11
TARGET = re.compile(r"\btarget\b")


@pytest.fixture(scope="module")
def log_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChidoriServer]:
    with ChidoriServer(tmp_path_factory.mktemp("log-viewer")) as running:
        yield running


@pytest.fixture(scope="module")
def failed(log_server: ChidoriServer) -> dict[str, Any]:
    with log_server.client() as client, LEVELS.open("rb") as script:
        uploaded = client.post("/api/v1/uploads", files={"file": ("levels.py", script)})
    assert uploaded.status_code == 201, uploaded.text
    job = log_server.submit(kind="python", application=uploaded.json()["uri"], args=["fail"])
    done = log_server.wait(job["id"])
    assert done["state"] == "FAILED", done
    return done


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def page(browser: Browser, log_server: ChidoriServer, failed: dict[str, Any]) -> Iterator[Page]:
    with signed_in(browser, log_server) as signed:
        yield signed


def line_numbers(page: Page, selector: str) -> list[int]:
    return [int(n) for n in page.locator(f"{selector} .ln").all_inner_texts()]


def first_error(page: Page) -> int:
    texts = page.locator("#log-text .line").all_inner_texts()
    return next(i for i, t in enumerate(texts, 1) if "ERROR Step" in t)


IN_VIEW = """n => {
  const a = document.getElementById('L' + n).getBoundingClientRect();
  const b = document.getElementById('log-text').getBoundingClientRect();
  return a.top >= b.top && a.bottom <= b.bottom && a.top >= 0 && a.bottom <= innerHeight;
}"""


def in_view(page: Page, line: int) -> bool:
    """The line shows inside the log box, and the box's part holding it in the window."""
    return bool(page.evaluate(IN_VIEW, line))


def test_a_failed_job_opens_at_its_first_error(page: Page, failed: dict[str, Any]) -> None:
    page.goto(f"/ui/jobs/{failed['id']}")
    expect(page.locator("#log-status")).to_contain_text("Opened at the first error")
    error = first_error(page)
    expect(page.locator(f"#L{error}")).to_have_class(TARGET)
    assert in_view(page, error)
    expect(page.locator("#log-permalink")).to_have_attribute("href", f"#L{error}")
    assert serious_violations(page) == []


def test_a_line_permalink_opens_scrolled_to_the_line(page: Page, failed: dict[str, Any]) -> None:
    page.goto(f"/ui/jobs/{failed['id']}#L7")
    expect(page.locator("#L7")).to_have_class(TARGET)
    assert in_view(page, 7)
    expect(page.locator(".line.target")).to_have_count(1)
    page.locator("#L12 .ln").click()  # a line number is its link
    expect(page).to_have_url(re.compile(r"#L12$"))
    expect(page.locator("#L12")).to_have_class(TARGET)
    expect(page.locator("#L7")).not_to_have_class(TARGET)


def test_a_share_link_keeps_line_permalinks(
    browser: Browser, log_server: ChidoriServer, failed: dict[str, Any]
) -> None:
    with log_server.client() as client:
        shared = client.post(f"/api/v1/jobs/{failed['id']}/share", json={"expires_in": "1h"})
    assert shared.status_code in (200, 201), shared.text
    context = browser.new_context(viewport={"width": 1400, "height": 900})  # no session
    try:
        anonymous = context.new_page()
        anonymous.goto(shared.json()["url"] + "#L9")
        expect(anonymous.locator("#L9")).to_have_class(TARGET)
        assert in_view(anonymous, 9)
        expect(anonymous.locator("#L9")).to_contain_text("step 9 needle")
    finally:
        context.close()


def test_next_and_previous_match_say_where_they_are(page: Page, failed: dict[str, Any]) -> None:
    page.goto(f"/ui/jobs/{failed['id']}")
    expect(page.locator("#log-text .line").first).to_be_attached()
    search = page.locator("#log-search")
    search.fill("NEEDLE")  # ignores case
    expect(page.locator("#log-count")).to_have_text(f"{NEEDLES} matching lines")
    search.press("Enter")
    expect(page.locator("#log-count")).to_have_text(f"1 of {NEEDLES}")
    page.get_by_role("button", name="Next match").click()
    expect(page.locator("#log-count")).to_have_text(f"2 of {NEEDLES}")
    current = page.locator("mark.current")
    expect(current).to_have_count(1)
    expect(page.locator("#log-permalink")).to_have_text(re.compile(r"^Link to line \d+$"))
    page.get_by_role("button", name="Previous match").click()
    search.focus()
    search.press("Shift+Enter")  # the keyboard goes backwards too, wrapping around
    expect(page.locator("#log-count")).to_have_text(f"{NEEDLES} of {NEEDLES}")
    expect(page.locator("mark.current")).to_contain_text("needle")
    assert serious_violations(page) == []


def test_only_matching_lines_and_the_level_filter(page: Page, failed: dict[str, Any]) -> None:
    page.goto(f"/ui/jobs/{failed['id']}")
    expect(page.locator("#log-text .line").first).to_be_attached()
    total = page.locator("#log-text .line").count()
    page.locator("#log-search").fill("needle")
    page.get_by_label("Only matching lines").check()
    visible = page.locator("#log-text .line:not(.hide)")
    expect(visible).to_have_count(NEEDLES)
    assert all("needle" in t.lower() for t in visible.all_inner_texts())
    page.get_by_label("Only matching lines").uncheck()
    page.locator("#log-search").fill("")
    expect(visible).to_have_count(total)
    page.get_by_label("Level").select_option("warn")
    warn_or_worse = visible.all_inner_texts()
    assert any(" WARN Step: step 10" in t for t in warn_or_worse)
    assert not any(" INFO Step:" in t for t in warn_or_worse)
    page.get_by_label("Level").select_option("error")
    errors = visible.all_inner_texts()
    assert not any(" WARN " in t for t in errors)
    assert any("ERROR Step: step 31" in t for t in errors)
    assert any(t.startswith("Traceback") or "Traceback" in t for t in errors)
    assert any("ValueError: levels.py failed on purpose" in t for t in errors)
    page.get_by_label("Level").select_option("")
    expect(visible).to_have_count(total)
    log = page.locator("#log-text")
    page.get_by_label("Wrap lines").uncheck()
    expect(log).to_have_class(re.compile(r"\bnowrap\b"))
    page.get_by_label("Wrap lines").check()
    expect(log).not_to_have_class(re.compile(r"\bnowrap\b"))


def test_a_traceback_names_the_submitted_file(
    page: Page, log_server: ChidoriServer, failed: dict[str, Any]
) -> None:
    raw = log_server.log(failed["id"])
    stored = re.search(r'File "([^"]*/[0-9a-f]{64}/levels\.py)"', raw)
    assert stored, raw  # the driver saw the server's copy
    page.goto(f"/ui/jobs/{failed['id']}")
    log = page.locator("#log-text")
    expect(log).to_contain_text('File "levels.py", line')
    text = log.inner_text()
    assert stored.group(1) not in text
    assert not re.search(r"[0-9a-f]{64}", text)
