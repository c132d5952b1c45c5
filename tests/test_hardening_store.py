"""Hardening of what users share through the store: idempotency keys are each user's own,
uploads are their team's, job share links die with their creator's access, and Livy
statements record who ran them (issue 23, defects 2 and 6, and part of 9)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from chidori.spec import JobSpec
from chidori.store.sql import open_store
from tests.server import ChidoriServer

TRAIN = {"kind": "python", "application": "examples/train.py"}


@dataclass
class World:
    server: ChidoriServer
    tokens: dict[str, str]

    def call(self, who: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        with self.server.client(self.tokens[who]) as client:
            return client.request(method, path, **kwargs)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """Alice and Dave in team a, Bob in team b; nothing runs (only the store matters)."""
    config = tmp_path_factory.mktemp("config") / "chidori.yaml"
    config.write_text("security:\n  submit_rate_per_second: 0\n")
    env = {"CHIDORI_MAX_RUNNING_JOBS": "0"}
    with ChidoriServer(tmp_path_factory.mktemp("store"), env=env, config=config) as server:
        tokens = {"admin": server.token}
        with server.client() as admin:
            for name, team in (("alice", "a"), ("dave", "a"), ("bob", "b")):
                created = admin.post(
                    "/api/v1/admin/users", json={"name": name, "role": "user", "team": team}
                )
                assert created.status_code == 201, created.text
                minted = admin.post("/api/v1/tokens", json={"user": name})
                tokens[name] = minted.json()["token"]
        yield World(server, tokens)


def submit(world: World, who: str, key: str, body: dict[str, Any]) -> httpx.Response:
    return world.call(who, "POST", "/api/v1/jobs", json=body, headers={"Idempotency-Key": key})


# ---- defect 2: idempotency keys per owner ------------------------------------------------------


def test_another_users_key_neither_returns_nor_reveals_their_job(world: World) -> None:
    alice = submit(world, "alice", "nightly-2026-12-07", {**TRAIN, "name": "alice-nightly"})
    assert alice.status_code == 201, alice.text
    again = submit(world, "alice", "nightly-2026-12-07", {**TRAIN, "name": "alice-nightly"})
    assert again.json()["id"] == alice.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    # Bob, same key and same spec: his own new job, not Alice's.
    same = submit(world, "bob", "nightly-2026-12-07", {**TRAIN, "name": "alice-nightly"})
    assert same.status_code == 201, same.text
    assert same.json()["id"] != alice.json()["id"] and same.json()["user"] == "bob"
    assert "idempotent-replayed" not in same.headers
    # Another spec: still his own job, no 409 saying the key exists.
    other = submit(world, "bob", "nightly-2026-12-08", {**TRAIN, "name": "bob"})
    assert other.status_code == 201
    different = submit(world, "dave", "nightly-2026-12-07", {**TRAIN, "name": "not-alice"})
    assert different.status_code == 201, different.text
    # The owner's own reuse with another spec is still a conflict.
    conflict = submit(world, "alice", "nightly-2026-12-07", {**TRAIN, "name": "changed"})
    assert conflict.status_code == 409


def test_a_key_taken_first_by_someone_else_does_not_capture_a_pipeline(world: World) -> None:
    squat = submit(world, "bob", "pipeline-42", {**TRAIN, "name": "squat"})
    assert squat.status_code == 201
    mine = submit(world, "alice", "pipeline-42", {**TRAIN, "name": "pipeline"})
    assert mine.status_code == 201 and mine.json()["user"] == "alice"
    assert mine.json()["name"] == "pipeline"


def test_owner_scoped_keys_migrate_both_ways_without_losing_rows(store_url: str) -> None:
    """Jobs with keys survive a downgrade to 0007 (global keys: the oldest of a key shared
    by two owners keeps it) and the upgrade back, with their events."""
    store = open_store(store_url)
    try:
        store.migrate()
        spec = JobSpec.model_validate(TRAIN)
        first, _ = store.create_job(spec, owner="alice", idempotency_key="k")
        second, _ = store.create_job(spec, owner="bob", idempotency_key="k")
        store.downgrade("0007")
        with store.reading() as session:
            rows = session.execute(text("SELECT id, idempotency_key FROM jobs ORDER BY id")).all()
            events = session.execute(text("SELECT COUNT(*) FROM events")).scalar()
        assert [tuple(r) for r in rows] == [(first.id, "k"), (second.id, None)]
        assert events == 2
        store.migrate()
        assert store.get_job(second.id).owner == "bob"
        again, created = store.create_job(spec, owner="alice", idempotency_key="k")
        assert created is False and again.id == first.id
        assert store.create_job(spec, owner="bob", idempotency_key="k")[1] is True
    finally:
        store.dispose()


# ---- part of 9: upload:// URIs are the team's -------------------------------------------------


def test_an_upload_is_usable_by_its_team_and_admins_only(world: World) -> None:
    stored = world.call(
        "alice",
        "POST",
        "/api/v1/uploads",
        files={"file": ("secret_app.py", io.BytesIO(b"print('a')\n"), "text/x-python")},
    )
    assert stored.status_code in (200, 201), stored.text
    uri = stored.json()["uri"]
    body = {"kind": "python", "application": uri}
    refused = world.call("bob", "POST", "/api/v1/jobs", json=body)
    assert refused.status_code == 422, refused.text
    fields = refused.json()["error"]["fields"]
    assert [f["field"] for f in fields] == ["application"]
    # The same answer as for an upload that does not exist: nothing is revealed.
    missing = uri.replace(uri.split("/")[2], "0" * 64)
    unknown = world.call("bob", "POST", "/api/v1/jobs", json={**body, "application": missing})
    assert unknown.status_code == 422
    unknown_message = unknown.json()["error"]["fields"][0]["message"]
    assert fields[0]["message"] == unknown_message.replace(missing, uri)
    for who in ("alice", "dave", "admin"):
        allowed = world.call(who, "POST", "/api/v1/jobs", json=body)
        assert allowed.status_code == 201, (who, allowed.text)
    # Bob storing the same bytes himself gets the right to use them too.
    own = world.call(
        "bob",
        "POST",
        "/api/v1/uploads",
        files={"file": ("secret_app.py", io.BytesIO(b"print('a')\n"), "text/x-python")},
    )
    assert own.json()["uri"] == uri
    assert world.call("bob", "POST", "/api/v1/jobs", json=body).status_code == 201


# ---- defect 6: job share links re-check their creator -----------------------------------------


def test_a_job_link_dies_when_its_creator_loses_access(world: World) -> None:
    """Erin shares her team mate Frank's job, Frank shares his own; Erin moves to another
    team and Frank is disabled: both links stop opening, as revoked ones do."""
    with world.server.client() as admin:
        for name in ("erin", "frank"):
            admin.post("/api/v1/admin/users", json={"name": name, "role": "user", "team": "c"})
            world.tokens[name] = admin.post("/api/v1/tokens", json={"user": name}).json()["token"]
    job = world.call("frank", "POST", "/api/v1/jobs", json={**TRAIN, "name": "frank-job"})
    assert job.status_code == 201
    links = {}
    for name in ("erin", "frank"):
        share = world.call(name, "POST", f"/api/v1/jobs/{job.json()['id']}/share", json={})
        assert share.status_code == 201, share.text
        links[name] = share.json()["url"]

    def status(url: str) -> tuple[int, int]:
        return (
            httpx.get(url).status_code,
            httpx.get(url + "/log").status_code,
        )

    assert status(links["erin"])[0] == 200 and status(links["frank"])[0] == 200
    with world.server.client() as admin:
        assert admin.patch("/api/v1/admin/users/erin", json={"team": "d"}).status_code == 200
    assert status(links["erin"]) == (404, 404)
    assert status(links["frank"])[0] == 200
    with world.server.client() as admin:
        assert admin.patch("/api/v1/admin/users/frank", json={"disabled": True}).status_code == 200
    assert status(links["frank"]) == (404, 404)


# ---- part of 9: Livy statements record who ran them -------------------------------------------


def test_a_livy_statement_records_who_ran_it(world: World) -> None:
    auth = ("alice", world.tokens["alice"])
    created = httpx.post(f"{world.server.url}/sessions", json={"kind": "pyspark"}, auth=auth)
    assert created.status_code == 201, created.text
    session = created.json()["id"]
    # Dave, Alice's team mate, runs a statement in her session (accepted while it starts).
    ran = httpx.post(
        f"{world.server.url}/sessions/{session}/statements",
        json={"code": "1 + 1"},
        auth=("dave", world.tokens["dave"]),
    )
    assert ran.status_code == 201, ran.text
    number = ran.json()["id"]
    with world.server.client() as admin:
        trail = admin.get("/api/v1/admin/audit", params={"limit": 50}).json()["items"]
        admin.delete(f"/api/v1/jobs/{session}")
    runs = [e for e in trail if e["action"] == "statement.run"]
    assert runs and runs[0]["actor"] == "dave"
    assert runs[0]["target"] == f"session/{session}/statement/{number}"
