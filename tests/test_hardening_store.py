"""Hardening of what users share through the store: idempotency keys are each user's own,
uploads are their team's, job share links die with their creator's access, and Livy
statements record who ran them (issue 23, defects 2 and 6, and part of 9)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from chidori.domain.spec import JobSpec, fingerprint_of
from chidori.store import JobRepository
from chidori.store.database import open_database
from chidori.store.sessions import SessionStore
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


def _insert_0007_job(session: Session, owner: str, key: str | None) -> int:
    """A job as revision 0007 stored it, with one attempt and two events; its id."""
    spec = JobSpec.model_validate(TRAIN).stored_dict()
    now = datetime(2026, 12, 1, tzinfo=UTC)
    job_id: int = session.execute(
        text(
            "INSERT INTO jobs (name, state, kind, cluster, queue, priority, owner, team, "
            "spec, spec_hash, idempotency_key, created_at, updated_at, attempts, "
            "failed_attempts, lost_attempts, cancel_requested, demand_memory_mb, demand_cores) "
            "VALUES ('train', 'SUCCEEDED', 'python', 'local', 'default', 0, :owner, "
            "'a', :spec, :hash, :key, :now, :now, 1, 0, 0, false, 0, 0) RETURNING id"
        ),
        {
            "owner": owner,
            "spec": json.dumps(spec),
            "hash": fingerprint_of(spec),
            "key": key,
            "now": now,
        },
    ).scalar_one()
    session.execute(
        text(
            "INSERT INTO attempts (job_id, number, state, server_id, host, started_at, "
            "lease_expires_at, exit_code) "
            "VALUES (:id, 1, 'SUCCEEDED', 's1', 'h1', :now, :now, 0)"
        ),
        {"id": job_id, "now": now},
    )
    for kind in ("submitted", "finished"):
        session.execute(
            text(
                "INSERT INTO events (job_id, time, type, actor) VALUES (:id, :now, :kind, :owner)"
            ),
            {"id": job_id, "now": now, "kind": kind, "owner": owner},
        )
    return job_id


def test_migration_0008_keeps_every_row_and_scopes_old_keys(store_url: str) -> None:
    """A database at 0007 with jobs, attempts and events upgrades to head without losing a
    row; an old (then global) key becomes its owner's, free for anyone else."""
    store = open_database(store_url)
    try:
        store.migrate("0007")
        with store.writing() as session:
            ids = [_insert_0007_job(session, "alice", "nightly")]
            ids.append(_insert_0007_job(session, "bob", None))
        store.migrate()
        assert [JobRepository(store).get_job(i).owner for i in ids] == ["alice", "bob"]
        assert [len(JobRepository(store).list_attempts(i)) for i in ids] == [1, 1]
        assert [len(JobRepository(store).list_events(i)) for i in ids] == [2, 2]
        spec = JobSpec.model_validate(TRAIN)
        replayed, created = JobRepository(store).create_job(
            spec, owner="alice", idempotency_key="nightly"
        )
        assert (replayed.id, created) == (ids[0], False)
        bobs, created = JobRepository(store).create_job(
            spec, owner="bob", idempotency_key="nightly"
        )
        assert created is True and bobs.id not in ids
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
    # And the statement row itself says so (the server's own SQLite store).
    store = open_database(f"sqlite:///{world.server.home / 'chidori.db'}")
    try:
        assert SessionStore(store).get_statement(session, number).submitted_by == "dave"
    finally:
        store.dispose()
