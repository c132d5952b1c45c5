"""UI pages over HTTP (no browser): sign-in redirects, CSRF on every form, roles (viewers
cannot cancel), the jobs list fragment, the history API and its visibility."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from tests.server import ChidoriServer
from tests.test_ui_login import csrf_field, sign_in

PAGES = ["/ui", "/ui/jobs/1", "/ui/history?schema=a&table=b", "/ui/queues", "/ui/shares"]


@pytest.fixture(scope="module")
def people(server: ChidoriServer) -> dict[str, str]:
    tokens = {}
    with server.client() as admin:
        for name, role, team in (
            ("pageuser", "user", "pages"),
            ("pageviewer", "viewer", "pages"),
            ("other", "user", "elsewhere"),
        ):
            made = admin.post(
                "/api/v1/admin/users", json={"name": name, "role": role, "team": team}
            )
            assert made.status_code == 201, made.text
            tokens[name] = admin.post("/api/v1/tokens", json={"user": name}).json()["token"]
    return tokens


@pytest.fixture
def sleeper(server: ChidoriServer, people: dict[str, str]) -> Iterator[int]:
    with server.client(people["pageuser"]) as client:
        job = client.post(
            "/api/v1/jobs",
            json={"kind": "python", "application": "tests/jobs/sleeper.py", "args": ["300"]},
        ).json()
    yield job["id"]
    with server.client() as admin:
        admin.delete(f"/api/v1/jobs/{job['id']}")


@pytest.mark.parametrize("path", PAGES)
def test_every_page_needs_a_session(server: ChidoriServer, path: str) -> None:
    response = httpx.get(server.url + path)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/ui/login?next=")


def test_a_viewer_sees_no_cancel_button_and_cannot_cancel(
    server: ChidoriServer, people: dict[str, str], sleeper: int
) -> None:
    with sign_in(server, people["pageviewer"]) as viewer:
        page = viewer.get(f"/ui/jobs/{sleeper}")
        assert page.status_code == 200
        assert "cancel-job" not in page.text
        refused = viewer.post(f"/ui/jobs/{sleeper}/cancel", data={"csrf": csrf_field(page.text)})
        assert refused.status_code == 403
    assert server.wait(sleeper, {"RUNNING", "QUEUED", "ADMITTED"})["cancel_requested"] is False


def test_the_owner_cancels_with_the_form_and_csrf_is_required(
    server: ChidoriServer, people: dict[str, str], sleeper: int
) -> None:
    with sign_in(server, people["pageuser"]) as user:
        page = user.get(f"/ui/jobs/{sleeper}")
        assert 'id="cancel-job"' in page.text
        assert user.post(f"/ui/jobs/{sleeper}/cancel", data={"csrf": "forged"}).status_code == 403
        assert user.post(f"/ui/jobs/{sleeper}/cancel").status_code == 403
        done = user.post(f"/ui/jobs/{sleeper}/cancel", data={"csrf": csrf_field(page.text)})
        assert done.status_code == 303
    assert server.wait(sleeper)["state"] == "CANCELLED"


def test_the_jobs_fragment_says_whether_jobs_are_still_active(
    server: ChidoriServer, people: dict[str, str], sleeper: int
) -> None:
    with sign_in(server, people["pageuser"]) as user:
        fragment = user.get("/ui", params={"fragment": "1", "state": ["QUEUED", "RUNNING"]})
        assert fragment.status_code == 200
        assert fragment.headers["X-Chidori-Active"] == "1"
        assert f'href="/ui/jobs/{sleeper}"' in fragment.text
        assert "<html" not in fragment.text
        done = user.get("/ui", params={"fragment": "1", "state": "CANCELLED", "q": "no-such"})
        assert done.headers["X-Chidori-Active"] == "0"


def test_other_users_jobs_are_not_shown_or_revealed(
    server: ChidoriServer, people: dict[str, str], sleeper: int
) -> None:
    with sign_in(server, people["other"]) as other:
        assert f'href="/ui/jobs/{sleeper}"' not in other.get("/ui").text
        hidden = other.get(f"/ui/jobs/{sleeper}")
        missing = other.get("/ui/jobs/999999999")
        assert hidden.status_code == missing.status_code == 404
        page = other.get("/ui")
        share = other.post(
            f"/ui/jobs/{sleeper}/share", data={"csrf": csrf_field(page.text), "expires_in": "1h"}
        )
        assert share.status_code == 404


def test_the_history_api_lists_visible_runs_newest_first(
    server: ChidoriServer, people: dict[str, str]
) -> None:
    spec = {"kind": "python", "application": "examples/train.py", "schema": "h", "table": "t"}
    with server.client(people["pageuser"]) as user, server.client(people["other"]) as other:
        mine = [user.post("/api/v1/jobs", json=spec).json()["id"] for _ in range(2)]
        theirs = other.post("/api/v1/jobs", json=spec).json()["id"]
        for job_id in [*mine, theirs]:
            server.wait(job_id)
        answer = user.get("/api/v1/history", params={"schema": "h", "table": "t"})
        assert answer.status_code == 200
        body = answer.json()
        assert (body["schema"], body["table"]) == ("h", "t")
        assert [run["id"] for run in body["items"]] == sorted(mine, reverse=True)
        assert all(run["duration_seconds"] > 0 for run in body["items"])
        missing = user.get("/api/v1/history", params={"schema": "h"})
        assert missing.status_code == 422
        assert missing.json()["error"]["fields"][0]["field"].endswith("table")
        paged = user.get("/api/v1/history", params={"schema": "h", "table": "t", "limit": 1})
        assert len(paged.json()["items"]) == 1 and paged.json()["next_cursor"]
    assert "/api/v1/history" in httpx.get(f"{server.url}/openapi.json").json()["paths"]


def test_a_shared_page_never_offers_actions_and_bad_tokens_reveal_nothing(
    server: ChidoriServer, people: dict[str, str]
) -> None:
    job = server.submit(kind="python", application="examples/train.py", name="shared-one")
    server.wait(job["id"])
    with server.client() as admin:
        made = admin.post(f"/api/v1/jobs/{job['id']}/share", json={"expires_in": "1h"})
    url = made.json()["url"]
    page = httpx.get(url)
    assert page.status_code == 200 and "shared-one" in page.text
    assert page.headers["cache-control"] == "no-store"
    assert not re.search(r'action="/ui/jobs/\d+/(cancel|share)"', page.text)
    assert "/api/v1/" not in page.text  # the log comes through the share-scoped endpoint
    refusals = [httpx.get(f"{server.url}/s/{token}") for token in ("x", "a.b", "x" * 600)]
    assert {r.status_code for r in refusals} == {404}
    assert len({r.text for r in refusals}) == 1


def test_a_dataset_link_shows_only_the_runs_its_creator_may_see(
    server: ChidoriServer, people: dict[str, str]
) -> None:
    spec = {"kind": "python", "application": "examples/train.py", "schema": "v", "table": "t"}
    with server.client(people["pageuser"]) as user, server.client(people["other"]) as other:
        mine = user.post("/api/v1/jobs", json={**spec, "name": "mine-run"}).json()["id"]
        theirs = other.post("/api/v1/jobs", json={**spec, "name": "their-run"}).json()["id"]
        server.wait(mine)
        server.wait(theirs)
        made = other.post("/api/v1/shares", json={"schema": "v", "table": "t"})
        assert made.status_code == 201, made.text
    page = httpx.get(made.json()["url"])
    assert page.status_code == 200
    assert "their-run" in page.text and "mine-run" not in page.text


def test_the_job_page_shows_how_a_finished_job_started_and_where_its_time_went(
    server: ChidoriServer,
) -> None:
    job = server.submit(kind="python", application="examples/train.py", name="timed-run")
    done = server.wait(job["id"])
    assert done["state"] == "SUCCEEDED"
    assert done["start_type"] == "cold"
    assert done["startup_seconds"] is not None and done["run_seconds"] is not None
    with sign_in(server, server.token) as admin:
        page = admin.get(f"/ui/jobs/{job['id']}").text
    start = re.search(r'<dd id="job-start">(.*?)</dd>', page)
    assert start and ">cold</span>" in start.group(1)
    assert re.search(r'class="state start-cold" title="[^"]+"', start.group(1))
    for field in ("job-queue-wait", "job-startup", "job-run-time"):
        shown = re.search(rf'<dd id="{field}">([^<]*)</dd>', page)
        assert shown and re.fullmatch(r"\d+\.\d s|\d+ m \d\d s", shown.group(1)), field
    assert ">warm</span>" not in page
