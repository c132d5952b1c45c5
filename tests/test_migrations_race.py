"""Two replicas starting at the same moment against one empty PostgreSQL schema.

Both must come up ready, and the schema must be migrated exactly once: `Database.migrate`
takes a PostgreSQL advisory lock, so the second replica waits, then finds the schema at head
and runs nothing. Evidence: one `alembic_version` row, at head; each migration's "Running
upgrade" line in exactly one of the two logs; no duplicate-object error in either.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from pathlib import Path

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text

from chidori.store.database import MIGRATIONS
from tests.server import ChidoriServer

pytestmark = pytest.mark.postgres

DUPLICATE = re.compile(r"already exists|DuplicateTable|DuplicateObject|UniqueViolation", re.I)
RUNNING_UPGRADE = re.compile(r"Running upgrade ([^\s,]*) -> ([^\s,]+)")


def head_revision() -> str:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def test_two_replicas_migrate_an_empty_schema_once(
    tmp_path: Path, postgres_schema_url: str
) -> None:
    env = {"CHIDORI_DATABASE_URL": postgres_schema_url, "CHIDORI_ISOLATION": "none"}
    replicas = [ChidoriServer(tmp_path / f"replica-{n}", env=env) for n in (1, 2)]
    barrier = threading.Barrier(len(replicas))
    errors: list[BaseException] = []

    def start(replica: ChidoriServer) -> None:
        barrier.wait()
        try:
            replica.start(timeout=120)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(r,)) for r in replicas]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors, errors
        for replica in replicas:
            with replica.client() as client:
                assert client.get("/readyz").status_code == 200
                assert client.get("/api/v1/jobs").status_code == 200
        logs = [replica.log_path.read_text(errors="replace") for replica in replicas]
    finally:
        for replica in replicas:
            replica.stop()

    engine = create_engine(postgres_schema_url)
    try:
        with engine.connect() as conn:
            versions = conn.execute(text("SELECT version_num FROM alembic_version")).all()
    finally:
        engine.dispose()
    assert [row[0] for row in versions] == [head_revision()]

    for log in logs:
        assert not DUPLICATE.search(log), log[-3000:]
    upgrades = Counter(m.group(2) for log in logs for m in RUNNING_UPGRADE.finditer(log))
    ran_by = [bool(RUNNING_UPGRADE.search(log)) for log in logs]
    # Alembic's INFO lines reach the server's log: each migration ran once, in one replica.
    assert head_revision() in upgrades, upgrades
    assert set(upgrades.values()) == {1}, upgrades
    assert ran_by.count(True) == 1, ran_by
