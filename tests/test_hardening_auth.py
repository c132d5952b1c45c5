"""Issue 23, authentication and sessions: proxy-SSO mode needs a CSRF proof, JSON bodies,
explicit trusted proxies and valid user names (defect 8); tokens die with the token that made
them and are capped per user; signing out and rotating the bootstrap token end UI sessions;
X-Forwarded-For counts only from trusted proxies; failed sign-ins are throttled (all part of 9).

Two module-scoped servers: `plain` (no proxy, 4 live tokens per user at most) and `proxied`
(identity from `X-Forwarded-User`, loopback as the trusted proxy, so a test can pose as
clients at other addresses through X-Forwarded-For; 5 failed sign-ins a minute per address).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text

from chidori.config import ConfigError, load_settings
from chidori.domain.errors import Conflict
from chidori.domain.identity import Role
from chidori.store import open_database
from chidori.store.database import MIGRATIONS, normalize_url
from chidori.store.identity import IdentityStore
from tests.server import ChidoriServer
from tests.test_ui_login import csrf_field, sign_in

TRAIN = {"kind": "python", "application": "examples/train.py"}
XHR = {"X-Requested-With": "XMLHttpRequest"}
PROXY_ENV = {
    "CHIDORI_MAX_RUNNING_JOBS": "0",
    "CHIDORI_PROXY_USER_HEADER": "X-Forwarded-User",
    "CHIDORI_TRUSTED_PROXIES": "127.0.0.1/32",
    "CHIDORI_AUTH_FAILURES_PER_MINUTE": "5",
}


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChidoriServer]:
    env = {"CHIDORI_MAX_RUNNING_JOBS": "0", "CHIDORI_MAX_TOKENS_PER_USER": "4"}
    with ChidoriServer(tmp_path_factory.mktemp("auth-plain"), env=env) as server:
        yield server


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChidoriServer]:
    with ChidoriServer(tmp_path_factory.mktemp("auth-proxied"), env=PROXY_ENV) as server:
        yield server


def as_user(name: str, **extra: str) -> dict[str, str]:
    return {"X-Forwarded-User": name, **extra}


def bearer(token: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **extra}


def make_user(server: ChidoriServer, name: str) -> tuple[str, int]:
    """A user with one token (made with the bootstrap token): (secret, id)."""
    with server.client() as admin:
        admin.post("/api/v1/admin/users", json={"name": name, "role": "user"})
        made = admin.post("/api/v1/tokens", json={"user": name}).json()
    return made["token"], made["id"]


def job_count(server: ChidoriServer) -> int:
    with server.client() as admin:
        return len(admin.get("/api/v1/jobs", params={"limit": 1000}).json()["items"])


# ---- defect 8: proxy-SSO mode ------------------------------------------------------------------


def test_proxy_mode_needs_trusted_proxies_set_explicitly(tmp_path: Path) -> None:
    assert load_settings({}, cwd=tmp_path).trusted_proxies == ()
    with pytest.raises(ConfigError, match="trusted_proxies"):
        load_settings({"CHIDORI_PROXY_USER_HEADER": "X-Forwarded-User"}, cwd=tmp_path)
    config = tmp_path / "proxy.yaml"
    config.write_text("security:\n  proxy_user_header: X-Forwarded-User\n")
    with pytest.raises(ConfigError, match="trusted_proxies"):
        load_settings({}, config, cwd=tmp_path)


def test_the_proxy_header_is_ignored_without_a_trusted_proxy(plain: ChidoriServer) -> None:
    response = httpx.get(f"{plain.url}/api/v1/whoami", headers=as_user("admin"))
    assert response.status_code == 401


def test_cross_site_requests_cannot_act_for_a_proxied_user(proxied: ChidoriServer) -> None:
    url = f"{proxied.url}/api/v1/jobs"
    before = job_count(proxied)
    # What a cross-site form can send: text, multipart, urlencoded; none is taken.
    body = b'{"kind": "python", "application": "examples/train.py"}'
    for content_type in (
        "text/plain",
        "multipart/form-data; boundary=x",
        "application/x-www-form-urlencoded",
    ):
        headers = as_user("dana", **{"Content-Type": content_type})
        refused = httpx.post(url, content=body, headers=headers)
        assert refused.status_code == 415, (content_type, refused.text)
        assert refused.json()["error"]["code"] == "unsupported_media_type"
    # JSON without a header forms cannot send (what fetch without CORS could do): refused.
    no_proof = httpx.post(url, json=TRAIN, headers=as_user("dana"))
    assert no_proof.status_code == 403 and "X-Requested-With" in no_proof.text
    blob = httpx.post(url, content=body, headers=as_user("dana", **XHR))  # no Content-Type
    assert blob.status_code == 415
    assert job_count(proxied) == before
    accepted = httpx.post(url, json=TRAIN, headers=as_user("dana", **XHR))
    assert accepted.status_code == 201 and accepted.json()["user"] == "dana"
    job_id = accepted.json()["id"]
    cancel = f"{url}/{job_id}"
    assert httpx.delete(cancel, headers=as_user("dana")).status_code == 403
    assert httpx.delete(cancel, headers=as_user("dana", **XHR)).status_code == 200
    # Reads need no proof.
    assert httpx.get(f"{url}/{job_id}", headers=as_user("dana")).status_code == 200


def test_uploads_still_work_behind_the_proxy_with_the_csrf_header(
    proxied: ChidoriServer,
) -> None:
    files = {"file": ("app.py", b"print('hi')\n", "text/x-python")}
    url = f"{proxied.url}/api/v1/uploads"
    assert httpx.post(url, files=files, headers=as_user("dana")).status_code == 403
    stored = httpx.post(url, files=files, headers=as_user("dana", **{"X-CSRF-Token": "ui"}))
    assert stored.status_code in (200, 201), stored.text
    assert stored.json()["uri"].startswith("upload://")


def test_forms_and_text_are_refused_on_json_routes_in_every_mode(plain: ChidoriServer) -> None:
    body = b'{"kind": "python", "application": "examples/train.py"}'
    before = job_count(plain)
    for path in ("/api/v1/jobs", "/batches", "/sessions", "/api/v1/tokens"):
        response = httpx.post(
            f"{plain.url}{path}",
            content=body,
            headers=bearer(plain.token, **{"Content-Type": "text/plain"}),
        )
        assert response.status_code == 415, (path, response.text)
    assert job_count(plain) == before


@pytest.mark.parametrize("name", ["bad name", "<script>", "a" * 129, "dana/../admin", "é"])
def test_proxy_user_names_follow_the_user_name_rules(proxied: ChidoriServer, name: str) -> None:
    response = httpx.get(
        f"{proxied.url}/api/v1/whoami", headers=[(b"X-Forwarded-User", name.encode())]
    )
    assert response.status_code == 401, response.text
    assert "invalid user name in X-Forwarded-User" in response.json()["error"]["message"]
    with proxied.client() as admin:
        names = {u["name"] for u in admin.get("/api/v1/admin/users").json()["items"]}
    assert name not in names


# ---- part of 9: X-Forwarded-For only from trusted proxies --------------------------------------


def _sources(server: ChidoriServer, job_id: int) -> set[str]:
    with server.client() as admin:
        events = admin.get(f"/api/v1/jobs/{job_id}/events").json()["items"]
    return {e["source"] for e in events}


def test_forwarded_for_from_an_untrusted_peer_is_ignored(plain: ChidoriServer) -> None:
    spoofed = {"X-Forwarded-For": "203.0.113.7"}
    with plain.client() as admin:
        job = admin.post("/api/v1/jobs", json=TRAIN, headers=spoofed).json()
        admin.post("/api/v1/admin/users", json={"name": "xff"}, headers=spoofed)
        audit = admin.get("/api/v1/admin/audit", params={"limit": 50}).json()["items"]
    assert _sources(plain, job["id"]) == {"127.0.0.1"}
    entry = next(e for e in audit if e["action"] == "user.create" and e["target"] == "xff")
    assert entry["source"] == "127.0.0.1"


def test_forwarded_for_from_a_trusted_proxy_names_the_client(proxied: ChidoriServer) -> None:
    # The proxy appended the address it saw; what the client claimed before it is not used.
    forwarded = {"X-Forwarded-For": "198.51.100.1, 203.0.113.9"}
    response = httpx.post(
        f"{proxied.url}/api/v1/jobs", json=TRAIN, headers=as_user("erin", **XHR, **forwarded)
    )
    assert response.status_code == 201, response.text
    assert _sources(proxied, response.json()["id"]) == {"203.0.113.9"}


# ---- part of 9: tokens die with their parent; a cap per user ----------------------------------


def test_revoking_a_token_revokes_the_tokens_made_with_it(plain: ChidoriServer) -> None:
    first, first_id = make_user(plain, "tina")
    url = f"{plain.url}/api/v1/tokens"
    child = httpx.post(url, json={"name": "child"}, headers=bearer(first)).json()
    grandchild = httpx.post(url, json={"name": "gc"}, headers=bearer(child["token"])).json()
    assert child["parent_id"] == first_id and grandchild["parent_id"] == child["id"]
    for token in (first, child["token"], grandchild["token"]):
        assert httpx.get(f"{plain.url}/api/v1/whoami", headers=bearer(token)).status_code == 200
    assert httpx.delete(f"{url}/{first_id}", headers=bearer(first)).status_code == 200
    for token in (child["token"], grandchild["token"]):
        assert httpx.get(f"{plain.url}/api/v1/whoami", headers=bearer(token)).status_code == 401
    with plain.client() as admin:
        listed = {t["id"]: t for t in admin.get(url, params={"user": "tina"}).json()["items"]}
        audit = admin.get("/api/v1/admin/audit", params={"limit": 50}).json()["items"]
    assert listed[child["id"]]["revoked_at"] and listed[grandchild["id"]]["revoked_at"]
    revoke = next(
        e for e in audit if e["action"] == "token.revoke" and e["target"] == f"tina/{first_id}"
    )
    assert revoke["detail"] == {"with_children": [child["id"], grandchild["id"]]}


def test_a_user_has_a_cap_on_live_tokens(plain: ChidoriServer) -> None:
    _, first_id = make_user(plain, "uma")  # one live token; the cap is 4
    with plain.client() as admin:
        for _ in range(3):
            assert admin.post("/api/v1/tokens", json={"user": "uma"}).status_code == 201
        refused = admin.post("/api/v1/tokens", json={"user": "uma"})
        assert refused.status_code == 409
        assert "already has 4 live tokens" in refused.json()["error"]["message"]
        admin.delete(f"/api/v1/tokens/{first_id}")
        assert admin.post("/api/v1/tokens", json={"user": "uma"}).status_code == 201


# ---- part of 9: failed sign-ins are throttled per address -------------------------------------


def test_failed_sign_ins_are_throttled_per_address(proxied: ChidoriServer) -> None:
    url = f"{proxied.url}/api/v1/whoami"
    good = proxied.token

    def from_(address: str, token: str) -> httpx.Response:
        return httpx.get(url, headers=bearer(token, **{"X-Forwarded-For": address}))

    statuses = [from_("192.0.2.50", f"chd_guess{i}").status_code for i in range(5)]
    assert statuses == [401] * 5
    limited = from_("192.0.2.50", "chd_guess5")
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    assert from_("192.0.2.50", good).status_code == 429  # no more tries from there
    assert from_("192.0.2.51", good).status_code == 200  # others are not held up
    # A revoked token is a stale credential, not a guess: it does not count.
    stale, stale_id = make_user(proxied, "vic")
    with proxied.client() as admin:
        admin.delete(f"/api/v1/tokens/{stale_id}")
    assert [from_("192.0.2.52", stale).status_code for _ in range(7)] == [401] * 7
    assert from_("192.0.2.52", good).status_code == 200


def test_failed_ui_sign_ins_are_throttled(proxied: ChidoriServer) -> None:
    headers = {"X-Forwarded-For": "192.0.2.60"}
    with httpx.Client(base_url=proxied.url, headers=headers) as client:
        csrf = csrf_field(client.get("/ui/login").text)
        statuses = [
            client.post("/ui/login", data={"token": f"nope{i}", "csrf": csrf}).status_code
            for i in range(6)
        ]
    assert statuses == [401] * 5 + [429]


# ---- part of 9: sessions end server-side ------------------------------------------------------


def _session_cookie(client: httpx.Client) -> dict[str, str]:
    return {"chidori_session": client.cookies["chidori_session"]}


def test_signing_out_ends_every_copy_of_the_session(plain: ChidoriServer) -> None:
    token, _ = make_user(plain, "walt")
    with sign_in(plain, token) as client:
        copied = _session_cookie(client)
        csrf = csrf_field(client.get("/ui").text)
        assert client.post("/ui/logout", data={"csrf": csrf}).status_code == 303
    whoami = httpx.get(f"{plain.url}/api/v1/whoami", cookies=copied)
    assert whoami.status_code == 401
    page = httpx.get(f"{plain.url}/ui", cookies=copied)
    assert page.status_code == 303 and page.headers["location"].startswith("/ui/login")
    # The token itself still works: only the session ended.
    assert httpx.get(f"{plain.url}/api/v1/whoami", headers=bearer(token)).status_code == 200


def test_rotating_the_bootstrap_token_ends_its_sessions(plain: ChidoriServer) -> None:
    """Runs last on `plain`: it restarts the server with another CHIDORI_ADMIN_TOKEN."""
    token, _ = make_user(plain, "xena")
    cookies: dict[str, dict[str, str]] = {}
    for who, secret in (("admin", plain.token), ("xena", token)):
        with sign_in(plain, secret) as client:
            cookies[who] = _session_cookie(client)
    whoami = f"{plain.url}/api/v1/whoami"
    assert httpx.get(whoami, cookies=cookies["admin"]).json()["name"] == "admin"
    plain.stop()
    plain.token = "rotated-admin-token"
    plain.start()
    assert httpx.get(whoami, cookies=cookies["admin"]).status_code == 401
    assert httpx.get(whoami, cookies=cookies["xena"]).json()["name"] == "xena"


# ---- migration 0009 on both databases ---------------------------------------------------------


def _alembic(url: str, action: str, revision: str) -> None:
    """Run an Alembic upgrade or downgrade on a plain connection (foreign keys off on SQLite,
    as Database.migrate does)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    engine = create_engine(normalize_url(url))
    try:
        with engine.connect() as conn:
            config.attributes["connection"] = conn
            getattr(command, action)(config, revision)
            conn.commit()
    finally:
        engine.dispose()


def _row_count(url: str, table: str) -> Any:
    engine = create_engine(normalize_url(url))
    try:
        with engine.connect() as conn:
            return conn.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar()
    finally:
        engine.dispose()


def test_migration_0009_keeps_tokens_and_adds_parents_and_sessions(store_url: str) -> None:
    store = open_database(store_url)
    try:
        store.migrate("0008")
        with store.writing() as session:
            session.execute(
                text(
                    "INSERT INTO users (name, role, disabled, created_at) "
                    "VALUES ('old', 'user', false, :now)"
                ),
                {"now": store.now()},
            )
            session.execute(
                text(
                    "INSERT INTO api_tokens (user_id, name, token_hash, prefix, created_at) "
                    "SELECT id, 't', 'hash-old', 'chd_old', :now FROM users WHERE name = 'old'"
                ),
                {"now": store.now()},
            )
        store.migrate()
        identity = IdentityStore(store)
        found = identity.find_token("hash-old")
        assert found is not None and found[1].parent_id is None
        parent = found[1]
        child = identity.add_token("old", "c", "hash-child", "chd_c", None, parent_id=parent.id)
        assert child.parent_id == parent.id
        with pytest.raises(Conflict):
            identity.add_token("old", "x", "hash-x", "chd_x", None, max_live=2)
        _, revoked = identity.revoke_token(parent.id)
        assert revoked == [child.id]
        identity.add_ui_session("s" * 64, "old", child.id, None, store.now())
        state = identity.ui_session("s" * 64)
        assert state is not None and state.token is not None and state.token.revoked_at
        identity.end_ui_session("s" * 64)
        ended = identity.ui_session("s" * 64)
        assert ended is not None and ended.ended_at is not None
        assert identity.get_user("old").role is Role.USER
    finally:
        store.dispose()
    _alembic(store_url, "downgrade", "0008")
    assert _row_count(store_url, "api_tokens") == 2
    _alembic(store_url, "upgrade", "head")
    assert _row_count(store_url, "ui_sessions") == 0
