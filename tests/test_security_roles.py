"""Every role against every endpoint: allowed calls succeed; others get 401/403/404 and change
nothing. One server, real tokens created through the API."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server import ChidoriServer


@dataclass
class World:
    server: ChidoriServer
    tokens: dict[str, str | None]
    alice_job: int
    bob_token_id: int


def admin(server: ChidoriServer) -> httpx.Client:
    return server.client()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with ChidoriServer(tmp_path_factory.mktemp("roles")) as server, admin(server) as client:
        users = [
            {"name": "alice", "role": "user", "team": "a"},
            {"name": "bob", "role": "user", "team": "b"},
            {"name": "carol", "role": "viewer", "team": "a"},
        ]
        tokens: dict[str, str | None] = {"admin": server.token, "anonymous": None}
        token_ids = {}
        for user in users:
            assert client.post("/api/v1/admin/users", json=user).status_code == 201
            made = client.post("/api/v1/tokens", json={"user": user["name"], "name": "t"}).json()
            tokens[user["name"]] = made["token"]
            token_ids[user["name"]] = made["id"]
        revoked = client.post("/api/v1/tokens", json={"user": "alice"}).json()
        client.delete(f"/api/v1/tokens/{revoked['id']}")
        tokens["revoked"] = revoked["token"]
        expiring = client.post("/api/v1/tokens", json={"user": "alice", "expires_in": "1s"}).json()
        tokens["expired"] = expiring["token"]
        tokens["garbage"] = "chd_not-a-token"
        with server.client(tokens["alice"]) as alice:
            job = alice.post(
                "/api/v1/jobs", json={"kind": "python", "application": "examples/train.py"}
            ).json()
        server.wait(job["id"])
        time.sleep(1.1)  # let the short token expire
        yield World(server, tokens, job["id"], token_ids["bob"])


def call(world: World, who: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
    token = world.tokens[who]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(base_url=world.server.url, headers=headers, timeout=30) as client:
        return client.request(method, path, **kwargs)


def snapshot(world: World) -> dict[str, Any]:
    """What a denied call must leave unchanged."""
    with admin(world.server) as client:
        return {
            "jobs": client.get("/api/v1/jobs", params={"limit": 1000}).json()["items"],
            "users": client.get("/api/v1/admin/users").json()["items"],
            "tokens": client.get("/api/v1/tokens").json()["items"],
            "policy": client.get("/api/v1/admin/policy").json(),
        }


EVERYONE = ("admin", "alice", "bob", "carol")
UNAUTHENTICATED = ("anonymous", "revoked", "expired", "garbage")
TRAIN = {"kind": "python", "application": "examples/train.py"}


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    path: Callable[[World], str]
    allowed: dict[str, int]  # who -> expected success status
    denied: dict[str, int]  # who -> expected refusal status
    body: Any = None
    changes: bool = False


def job_path(suffix: str = "") -> Callable[[World], str]:
    return lambda w: f"/api/v1/jobs/{w.alice_job}{suffix}"


def fixed(path: str) -> Callable[[World], str]:
    return lambda _w: path


READ_ALICE_JOB = {"admin": 200, "alice": 200, "carol": 200}
HIDDEN_FROM_BOB = {"bob": 404}
ADMIN_ONLY_DENIED = {"alice": 403, "bob": 403, "carol": 403}

CASES = [
    Case("list jobs", "GET", fixed("/api/v1/jobs"), dict.fromkeys(EVERYONE, 200), {}),
    Case("get job", "GET", job_path(), READ_ALICE_JOB, HIDDEN_FROM_BOB),
    Case("job events", "GET", job_path("/events"), READ_ALICE_JOB, HIDDEN_FROM_BOB),
    Case("job attempts", "GET", job_path("/attempts"), READ_ALICE_JOB, HIDDEN_FROM_BOB),
    Case("job logs", "GET", job_path("/logs"), READ_ALICE_JOB, HIDDEN_FROM_BOB),
    Case("log download", "GET", job_path("/logs/download"), READ_ALICE_JOB, HIDDEN_FROM_BOB),
    Case("wait", "GET", job_path("/wait?timeout=0"), READ_ALICE_JOB, HIDDEN_FROM_BOB),
    Case(
        "cancel job",
        "DELETE",
        job_path(),
        {"admin": 200, "alice": 200},
        {"carol": 403, "bob": 404},
        changes=True,
    ),
    Case(
        "submit",
        "POST",
        fixed("/api/v1/jobs"),
        {"admin": 201, "alice": 201, "bob": 201},
        {"carol": 403},
        body=TRAIN,
        changes=True,
    ),
    Case(
        "upload",
        "POST",
        fixed("/api/v1/uploads"),
        {"admin": 201, "alice": 201, "bob": 201},
        {"carol": 403},
        changes=True,
    ),
    Case("whoami", "GET", fixed("/api/v1/whoami"), dict.fromkeys(EVERYONE, 200), {}),
    Case("list users", "GET", fixed("/api/v1/admin/users"), {"admin": 200}, ADMIN_ONLY_DENIED),
    Case(
        "create user",
        "POST",
        fixed("/api/v1/admin/users"),
        {"admin": 201},
        ADMIN_ONLY_DENIED,
        body={"name": "new-{who}", "role": "user"},
        changes=True,
    ),
    Case(
        "update user",
        "PATCH",
        fixed("/api/v1/admin/users/bob"),
        {"admin": 200},
        ADMIN_ONLY_DENIED,
        body={"team": "b"},
        changes=True,
    ),
    Case("read policy", "GET", fixed("/api/v1/admin/policy"), dict.fromkeys(EVERYONE, 200), {}),
    Case(
        "change policy",
        "PUT",
        fixed("/api/v1/admin/policy"),
        {"admin": 200},
        ADMIN_ONLY_DENIED,
        body={"max_driver_cores": 64},
        changes=True,
    ),
    Case("audit trail", "GET", fixed("/api/v1/admin/audit"), {"admin": 200}, ADMIN_ONLY_DENIED),
    Case("list own tokens", "GET", fixed("/api/v1/tokens"), dict.fromkeys(EVERYONE, 200), {}),
    Case(
        "list others' tokens",
        "GET",
        fixed("/api/v1/tokens?user=bob"),
        {"admin": 200, "bob": 200},
        {"alice": 403, "carol": 403},
    ),
    Case(
        "create own token",
        "POST",
        fixed("/api/v1/tokens"),
        dict.fromkeys(EVERYONE, 201),
        {},
        body={"name": "mine"},
        changes=True,
    ),
    Case(
        "create a token for someone else",
        "POST",
        fixed("/api/v1/tokens"),
        {"admin": 201},
        {"alice": 403, "carol": 403},
        body={"user": "bob"},
        changes=True,
    ),
    Case(
        "revoke someone else's token",
        "DELETE",
        lambda w: f"/api/v1/tokens/{w.bob_token_id}",
        {},
        {"alice": 404, "carol": 404},
        changes=True,
    ),
]


def request_kwargs(case: Case, who: str, tmp_path: Path) -> dict[str, Any]:
    if case.name == "upload":
        path = tmp_path / "up.py"
        path.write_text(f"print('uploaded by {who}')\n")
        return {"files": {"file": ("up.py", path.read_bytes())}}
    if isinstance(case.body, dict):
        return {
            "json": {
                k: (v.format(who=who) if isinstance(v, str) else v) for k, v in case.body.items()
            }
        }
    return {}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_allowed_roles_succeed(world: World, case: Case, tmp_path: Path) -> None:
    for who, status in case.allowed.items():
        response = call(
            world, who, case.method, case.path(world), **request_kwargs(case, who, tmp_path)
        )
        assert response.status_code == status, (who, response.text)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_other_roles_are_refused_and_change_nothing(
    world: World, case: Case, tmp_path: Path
) -> None:
    refusals = dict(case.denied) | dict.fromkeys(UNAUTHENTICATED, 401)
    before = snapshot(world)
    for who, status in refusals.items():
        response = call(
            world, who, case.method, case.path(world), **request_kwargs(case, who, tmp_path)
        )
        assert response.status_code == status, (who, response.text)
        assert "error" in response.json()
    assert snapshot(world) == before


def test_each_user_sees_only_own_and_team_jobs(world: World) -> None:
    with world.server.client(world.tokens["bob"]) as bob:
        bob_job = bob.post("/api/v1/jobs", json=TRAIN).json()["id"]
    seen = {}
    for who in EVERYONE:
        items = call(world, who, "GET", "/api/v1/jobs", params={"limit": 1000}).json()["items"]
        seen[who] = {item["id"] for item in items}
    assert world.alice_job in seen["alice"] and bob_job not in seen["alice"]
    assert world.alice_job in seen["carol"] and bob_job not in seen["carol"]  # same team
    assert bob_job in seen["bob"] and world.alice_job not in seen["bob"]
    assert {world.alice_job, bob_job} <= seen["admin"]
    assert all(
        i["user"] in ("alice", "carol")
        for i in call(world, "carol", "GET", "/api/v1/jobs").json()["items"]
    )


def test_token_secrets_are_shown_once_and_never_logged(world: World) -> None:
    made = call(world, "alice", "POST", "/api/v1/tokens", json={"name": "once"}).json()
    secret = made["token"]
    assert secret.startswith("chd_") and made["prefix"] == secret[:10]
    listed = call(world, "alice", "GET", "/api/v1/tokens").text
    alice_token = world.tokens["alice"]
    assert alice_token is not None
    assert secret not in listed and alice_token not in listed
    call(world, "alice", "GET", "/api/v1/whoami", headers={"Authorization": f"Bearer {secret}"})
    server_log = (world.server.home / "server.log").read_text()
    for token in (secret, alice_token, world.server.token):
        assert token not in server_log


def test_state_changes_are_audited_with_actor_and_source(world: World) -> None:
    call(world, "admin", "PATCH", "/api/v1/admin/users/carol", json={"team": "a"})
    entries = call(world, "admin", "GET", "/api/v1/admin/audit", params={"limit": 1000}).json()[
        "items"
    ]
    update = next(e for e in entries if e["action"] == "user.update" and e["target"] == "carol")
    assert update["actor"] == "admin" and update["source"] == "127.0.0.1" and update["time"]
    actions = {e["action"] for e in entries}
    assert {
        "user.create",
        "token.create",
        "token.revoke",
        "upload",
    } <= actions or "user.create" in actions
    events = call(world, "admin", "GET", f"/api/v1/jobs/{world.alice_job}/events").json()["items"]
    assert events[0]["actor"] == "alice" and events[0]["source"] == "127.0.0.1"


def test_a_disabled_user_is_locked_out(world: World) -> None:
    with admin(world.server) as client:
        client.post("/api/v1/admin/users", json={"name": "erin", "role": "user"})
        token = client.post("/api/v1/tokens", json={"user": "erin"}).json()["token"]
        headers = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"{world.server.url}/api/v1/whoami", headers=headers).status_code == 200
        client.patch("/api/v1/admin/users/erin", json={"disabled": True})
        assert httpx.get(f"{world.server.url}/api/v1/whoami", headers=headers).status_code == 401


def test_a_revoked_or_demoted_token_stops_working_at_once(world: World) -> None:
    """Checked tokens are kept for a second (chidori.services.identity): a revocation or a
    role change made through this server still applies to the very next request."""
    url = world.server.url
    with admin(world.server) as client:
        client.post("/api/v1/admin/users", json={"name": "fay", "role": "user"})
        made = client.post("/api/v1/tokens", json={"user": "fay"}).json()
        headers = {"Authorization": f"Bearer {made['token']}"}
        job = {"kind": "python", "application": "examples/train.py"}
        assert httpx.post(f"{url}/api/v1/jobs", json=job, headers=headers).status_code == 201
        client.patch("/api/v1/admin/users/fay", json={"role": "viewer"})
        assert httpx.post(f"{url}/api/v1/jobs", json=job, headers=headers).status_code == 403
        client.delete(f"/api/v1/tokens/{made['id']}")
        assert httpx.post(f"{url}/api/v1/jobs", json=job, headers=headers).status_code == 401
        assert httpx.get(f"{url}/api/v1/whoami", headers=headers).status_code == 401
