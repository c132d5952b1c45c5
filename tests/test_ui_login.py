"""Signing in to the UI: a token opens a signed HttpOnly session cookie; CSRF protects every
unsafe request made with that cookie; tampering, logout and revoking the token end it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from tests.server import ChidoriServer


def csrf_field(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, page
    return match.group(1)


@contextmanager
def sign_in(server: ChidoriServer, token: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        form = client.get("/ui/login")
        assert form.status_code == 200
        response = client.post(
            "/ui/login", data={"token": token, "csrf": csrf_field(form.text), "next": "/ui"}
        )
        assert response.status_code == 303, response.text
        assert response.headers["location"] == "/ui"
        yield client


@pytest.fixture
def user_token(server: ChidoriServer) -> tuple[str, int]:
    with server.client() as admin:
        admin.post("/api/v1/admin/users", json={"name": "uiuser", "role": "user"})
        made = admin.post("/api/v1/tokens", json={"user": "uiuser"}).json()
    return made["token"], made["id"]


def test_the_ui_redirects_to_sign_in_without_a_session(server: ChidoriServer) -> None:
    response = httpx.get(f"{server.url}/ui")
    assert response.status_code == 303
    assert response.headers["location"].startswith("/ui/login")


def test_signing_in_sets_an_httponly_session_cookie(
    server: ChidoriServer, user_token: tuple[str, int]
) -> None:
    with sign_in(server, user_token[0]) as client:
        cookie = next(c for c in client.cookies.jar if c.name == "chidori_session")
        assert cookie.has_nonstandard_attr("HttpOnly")
        page = client.get("/ui")
        assert page.status_code == 200 and "uiuser" in page.text
        assert user_token[0] not in page.text
        assert client.get("/api/v1/whoami").json()["name"] == "uiuser"


def test_a_wrong_token_or_missing_csrf_does_not_sign_in(server: ChidoriServer) -> None:
    with httpx.Client(base_url=server.url) as client:
        form = client.get("/ui/login")
        wrong = client.post("/ui/login", data={"token": "nope", "csrf": csrf_field(form.text)})
        assert wrong.status_code == 401 and "not valid" in wrong.text
        forged = client.post("/ui/login", data={"token": server.token, "csrf": "forged"})
        assert forged.status_code == 403
        assert "chidori_session" not in client.cookies


def test_unsafe_api_calls_with_the_cookie_need_the_csrf_token(
    server: ChidoriServer, user_token: tuple[str, int]
) -> None:
    with sign_in(server, user_token[0]) as client:
        body = {"kind": "python", "application": "examples/train.py"}
        refused = client.post("/api/v1/jobs", json=body)
        assert refused.status_code == 403
        csrf = csrf_field(client.get("/ui").text)
        accepted = client.post("/api/v1/jobs", json=body, headers={"X-CSRF-Token": csrf})
        assert accepted.status_code == 201
        server.wait(accepted.json()["id"])


def test_a_tampered_cookie_is_refused(server: ChidoriServer, user_token: tuple[str, int]) -> None:
    with sign_in(server, user_token[0]) as client:
        value = client.cookies["chidori_session"]
        body, mac = value.split(".")
        forged = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1] + "." + mac
        client.cookies.clear()
        client.cookies.set("chidori_session", forged, domain="127.0.0.1")
        assert client.get("/api/v1/whoami").status_code == 401


def test_logout_and_revoking_the_token_end_the_session(
    server: ChidoriServer, user_token: tuple[str, int]
) -> None:
    token, token_id = user_token
    with sign_in(server, token) as client:
        csrf = csrf_field(client.get("/ui").text)
        assert client.post("/ui/logout", data={"csrf": "wrong"}).status_code == 403
        assert client.post("/ui/logout", data={"csrf": csrf}).status_code == 303
        assert client.get("/api/v1/whoami").status_code == 401
    with sign_in(server, token) as client:
        with server.client() as admin:
            admin.delete(f"/api/v1/tokens/{token_id}")
        assert client.get("/api/v1/whoami").status_code == 401


def test_sign_in_never_redirects_off_site(
    server: ChidoriServer, user_token: tuple[str, int]
) -> None:
    with httpx.Client(base_url=server.url) as client:
        form = client.get("/ui/login", params={"next": "https://evil.example/"})
        assert 'value="/ui"' in form.text
        response = client.post(
            "/ui/login",
            data={"token": user_token[0], "csrf": csrf_field(form.text), "next": "//evil.example"},
        )
        assert response.headers["location"] == "/ui"
