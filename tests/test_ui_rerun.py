"""Re-run and "Copy as `chidori submit`" on the job page, in a real browser (Debian's chromium
through Playwright) against one live server, and `chidori jobs rerun` against the same one.

A plain user's uploaded Python job that prints its arguments: the page shows the command line
that submits it again (the upload by its submitted name, arguments shell-quoted, a secret
redacted), the Copy button puts exactly that on the clipboard, and Re-run submits the stored
spec (the secret included: the new job prints it) as the user, labelled with the job it runs
again, then opens the new job's page; the same form sent twice makes one job. Someone who may
not see the job gets a 404 and no job; a viewer who may see it gets no button and a 403; the
submission checks apply (a queue the user may no longer use refuses it).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from chidori.cli import main
from chidori.domain.submit_command import RERUN_LABEL
from tests.server import ChidoriServer
from tests.test_ui_browser import CHROMIUM, CHROMIUM_ARGS, shot
from tests.test_ui_live import serious_violations

ECHO = "import sys\nprint('argv', sys.argv[1:], flush=True)\n"
SECRET = "hunter2-rerun"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChidoriServer]:
    with ChidoriServer(tmp_path_factory.mktemp("ui-rerun")) as running:
        yield running


def add_user(server: ChidoriServer, name: str, role: str, team: str | None) -> str:
    with server.client() as admin:
        made = admin.post("/api/v1/admin/users", json={"name": name, "role": role, "team": team})
        assert made.status_code == 201, made.text
        issued = admin.post("/api/v1/tokens", json={"user": name, "name": "t"})
        assert issued.status_code == 201, issued.text
    token: str = issued.json()["token"]
    return token


@pytest.fixture(scope="module")
def tokens(server: ChidoriServer) -> dict[str, str]:
    """ana submits; vi is a viewer in her team; bo is a user in another team."""
    return {
        "ana": add_user(server, "ana", "user", "data"),
        "vi": add_user(server, "vi", "viewer", "data"),
        "bo": add_user(server, "bo", "user", "web"),
    }


@pytest.fixture(scope="module")
def echo_job(server: ChidoriServer, tokens: dict[str, str]) -> dict[str, Any]:
    """ana's finished job: an uploaded script printing its arguments, one of them secret."""
    with server.client(tokens["ana"]) as client:
        uploaded = client.post("/api/v1/uploads", files={"file": ("echo_args.py", ECHO.encode())})
        assert uploaded.status_code == 201, uploaded.text
        spec = {
            "kind": "python",
            "application": uploaded.json()["uri"],
            "args": ["a b", "it's", f"--password={SECRET}"],
            "labels": {"team": "data"},
            "name": "echo args",
        }
        created = client.post("/api/v1/jobs", json=spec)
        assert created.status_code == 201, created.text
    job: dict[str, Any] = server.wait(created.json()["id"])
    assert job["state"] == "SUCCEEDED", job
    return job


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def signed_in(browser: Browser, server: ChidoriServer, token: str) -> tuple[BrowserContext, str]:
    """A browser signed in with `token`, and its session's CSRF token (from the sign-out form
    every page carries)."""
    context = browser.new_context(base_url=server.url, viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.goto("/ui")
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/ui")
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    page.close()
    assert csrf
    return context, csrf


def job_count(server: ChidoriServer) -> int:
    with server.client() as admin:
        return len(admin.get("/api/v1/jobs", params={"limit": 200}).json()["items"])


EXPECTED_COMMAND = (
    "chidori submit --kind python --name 'echo args' --label team=data echo_args.py "
    "'a b' 'it'\"'\"'s' '--password=*********(redacted)'"
)


def test_rerun_from_the_job_page_submits_the_stored_spec_as_the_user(
    browser: Browser, server: ChidoriServer, tokens: dict[str, str], echo_job: dict[str, Any]
) -> None:
    context, csrf = signed_in(browser, server, tokens["ana"])
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    page: Page = context.new_page()
    page.goto(f"/ui/jobs/{echo_job['id']}")
    command = page.locator("#submit-command")
    expect(command).to_have_text(EXPECTED_COMMAND)
    page.locator("#copy-command").click()
    expect(page.locator("#copy-command")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == EXPECTED_COMMAND
    assert serious_violations(page) == []
    shot(page, "ui-rerun-job-page")

    page.locator("#rerun-job").click()
    page.wait_for_url(re.compile(r".*/ui/jobs/\d+\?notice=rerun$"))
    new_id = int(page.url.split("/ui/jobs/")[1].split("?")[0])
    assert new_id != echo_job["id"]
    expect(page.locator(".notice")).to_have_text("Submitted as a re-run.")
    expect(page.locator("#rerun-of a")).to_have_attribute("href", f"/ui/jobs/{echo_job['id']}")
    rerun = server.wait(new_id)
    assert rerun["state"] == "SUCCEEDED", rerun
    assert rerun["user"] == "ana"
    assert rerun["spec"] == {
        **echo_job["spec"],
        "labels": {"team": "data", RERUN_LABEL: str(echo_job["id"])},
    }
    # The stored secret went to the new job, not the redacted text the page shows.
    assert f"'--password={SECRET}'" in server.log(new_id)
    # Its own page offers the command again, now with the label.
    expect(page.locator("#submit-command")).to_contain_text(
        f"--label {RERUN_LABEL}={echo_job['id']}"
    )

    # The same form sent twice (a double click) makes one job.
    page.goto(f"/ui/jobs/{echo_job['id']}")
    nonce = page.locator("input[name=nonce]").get_attribute("value")
    form: dict[str, str | float | bool] = {"csrf": csrf, "nonce": nonce or ""}
    answers = [
        context.request.post(f"/ui/jobs/{echo_job['id']}/rerun", form=form, max_redirects=0)
        for _ in range(2)
    ]
    assert [a.status for a in answers] == [303, 303]
    assert answers[0].headers["location"] == answers[1].headers["location"]
    assert answers[0].headers["location"] != f"/ui/jobs/{new_id}?notice=rerun"
    context.close()


def test_rerun_is_refused_to_who_may_not_see_or_submit_the_job(
    browser: Browser, server: ChidoriServer, tokens: dict[str, str], echo_job: dict[str, Any]
) -> None:
    before = job_count(server)
    url = f"/ui/jobs/{echo_job['id']}/rerun"
    # bo (another team) may not see it: 404, as for a job that does not exist.
    other, csrf = signed_in(browser, server, tokens["bo"])
    form: dict[str, str | float | bool] = {"csrf": csrf, "nonce": "x" * 22}
    refused = other.request.post(url, form=form, max_redirects=0)
    assert refused.status == 404
    assert f"job {echo_job['id']} not found" in refused.text()
    assert other.request.post("/ui/jobs/999999/rerun", form=form).status == 404
    other.close()

    # vi (a viewer in ana's team) sees it, with no Re-run button, and may not submit: 403.
    viewer, csrf = signed_in(browser, server, tokens["vi"])
    page = viewer.new_page()
    page.goto(f"/ui/jobs/{echo_job['id']}")
    expect(page.locator("#submit-command")).to_have_text(EXPECTED_COMMAND)
    expect(page.locator("#rerun-job")).to_have_count(0)
    assert viewer.request.post(url, form={"csrf": csrf}).status == 403
    viewer.close()

    # ana without the form's CSRF token: 403.
    owner, csrf = signed_in(browser, server, tokens["ana"])
    assert owner.request.post(url, form={"csrf": "wrong"}).status == 403
    # The submission's own checks apply: a queue ana may no longer use refuses it.
    with server.client() as admin:
        assert admin.patch("/api/v1/admin/users/ana", json={"queues": ["etl"]}).status_code == 200
    try:
        time.sleep(1.1)  # principals are kept for a second
        answer = owner.request.post(url, form={"csrf": csrf})
        assert answer.status == 403, answer.text()
        assert "queue" in answer.text()
    finally:
        with server.client() as admin:
            admin.patch("/api/v1/admin/users/ana", json={"queues": None})
    owner.close()
    assert job_count(server) == before


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_chidori_jobs_rerun(
    server: ChidoriServer,
    tokens: dict[str, str],
    echo_job: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    connection = ("--server", server.url, "--token", tokens["ana"])
    # The API never returns the redacted secret: the CLI says so and submits nothing.
    status, out, err = cli(capsys, "jobs", "rerun", str(echo_job["id"]), *connection)
    assert status == 2 and out == ""
    assert "redacts (args)" in err and "Re-run on the job's page" in err

    with server.client(tokens["ana"]) as client:
        spec = {"kind": "python", "application": "tests/jobs/sleeper.py", "args": ["0.1"]}
        plain = client.post("/api/v1/jobs", json=spec).json()
    status, out, err = cli(capsys, "jobs", "rerun", str(plain["id"]), "--wait", *connection)
    assert status == 0, err
    new_id = int(out.strip())
    again = server.wait(new_id)
    assert again["state"] == "SUCCEEDED" and again["user"] == "ana"
    assert again["spec"]["labels"] == {RERUN_LABEL: str(plain["id"])}
    assert f"view it at {server.url}/ui/jobs/{new_id}" in err

    # bo may not see ana's job: not found (exit 6), nothing submitted.
    before = job_count(server)
    bo = ("--server", server.url, "--token", tokens["bo"])
    status, _out, err = cli(capsys, "jobs", "rerun", str(plain["id"]), *bo)
    assert status == 6, err
    assert job_count(server) == before
