"""Shared storage: one contract, run over every store (a folder, the database on SQLite and
PostgreSQL, S3 through fsspec against a local S3-compatible server)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from chidori.storage.blobs import CHUNK_BYTES, BlobStore, DatabaseBlobs, DirectoryBlobs, open_blobs
from chidori.storage.logship import EventLogSync, LogShipper, SharedLog
from chidori.store.database import open_database
from tests.s3 import BUCKET, s3_server


@pytest.fixture(scope="module")
def s3_env() -> Iterator[dict[str, str]]:
    with s3_server() as env:
        saved = {name: os.environ.get(name) for name in env}
        os.environ.update(env)
        try:
            yield env
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


@pytest.fixture(params=["folder", "sqlite", "postgres", "s3"])
def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStore]:
    if request.param == "folder":
        yield DirectoryBlobs(tmp_path / "blobs", shared=True)
    elif request.param in ("sqlite", "postgres"):
        url = (
            f"sqlite:///{tmp_path / 'chidori.db'}"
            if request.param == "sqlite"
            else request.getfixturevalue("postgres_schema_url")
        )
        store = open_database(url)
        store.migrate()
        yield DatabaseBlobs(store.writing, store.reading, store.dialect)
        store.dispose()
    else:
        request.getfixturevalue("s3_env")
        from chidori.storage.blobs_fsspec import FsspecBlobs

        yield FsspecBlobs(f"s3://{BUCKET}/{tmp_path.name}")


def test_an_object_reads_back_whole_and_by_range(blobs: BlobStore, tmp_path: Path) -> None:
    data = os.urandom(CHUNK_BYTES * 2 + 123)  # spans three database chunks
    blobs.put_bytes("uploads/abc/app.py", data)
    assert blobs.size("uploads/abc/app.py") == len(data)
    assert blobs.read("uploads/abc/app.py") == data
    start = CHUNK_BYTES - 10
    assert blobs.read("uploads/abc/app.py", start, 30) == data[start : start + 30]
    assert blobs.read("uploads/abc/app.py", len(data) - 5, 100) == data[-5:]
    target = tmp_path / "fetched" / "app.py"
    blobs.fetch("uploads/abc/app.py", target)
    assert target.read_bytes() == data


def test_missing_objects_and_replacement(blobs: BlobStore) -> None:
    assert blobs.size("uploads/none/x") is None
    with pytest.raises(KeyError):
        blobs.read("uploads/none/x")
    blobs.put_bytes("a/b", b"first")
    blobs.put_bytes("a/b", b"2nd")
    assert blobs.read("a/b") == b"2nd"
    blobs.put_bytes("a/empty", b"")
    assert blobs.size("a/empty") == 0
    assert blobs.read("a/empty") == b""
    blobs.delete("a/b")
    blobs.delete("a/b")  # deleting twice is no error
    assert blobs.size("a/b") is None


def test_listing_is_by_prefix_and_sorted(blobs: BlobStore) -> None:
    for key in ("logs/7/1/0000000000000010", "logs/7/1/0000000000000000", "logs/7/2/x",
                "logs/70/1/0000000000000000", "uploads/z"):  # fmt: skip
        blobs.put_bytes(key, b"x" * 3)
    keys = [info.key for info in blobs.list("logs/7/1/")]
    assert keys == ["logs/7/1/0000000000000000", "logs/7/1/0000000000000010"]
    assert [info.key for info in blobs.list("logs/7/")] == [*keys, "logs/7/2/x"]
    assert all(info.size == 3 for info in blobs.list("logs/"))


def test_keys_cannot_climb_out(blobs: BlobStore) -> None:
    for key in ("../x", "a/../../x", "/etc/passwd", "a//b", "a/./b", ""):
        with pytest.raises(ValueError, match="not a storage key"):
            blobs.put_bytes(key, b"x")


def test_a_shipped_log_reads_the_same_from_storage(blobs: BlobStore, tmp_path: Path) -> None:
    log = tmp_path / "driver.log"
    shipper = LogShipper(blobs, interval=3600)
    shipper.track(5, 1, log)
    shipper.ship_now()  # no file yet: nothing, no error
    assert not SharedLog(blobs, 5, 1).exists
    log.write_bytes(b"line one\n")
    shipper.ship_now()
    with open(log, "ab") as out:
        out.write(b"line two\n" * 1000)
    shipper.ship_now()
    seen = SharedLog(blobs, 5, 1)
    assert not seen.complete
    assert seen.size == log.stat().st_size
    with open(log, "ab") as out:
        out.write(b"the end\n")
    shipper.finish(5, 1)
    final = SharedLog(blobs, 5, 1)
    whole = log.read_bytes()
    assert final.complete
    assert final.size == len(whole)
    assert final.read(0, len(whole) + 10) == whole
    assert final.read(5, 20) == whole[5:25]


def test_the_embedded_default_keeps_everything_on_this_host() -> None:
    class Sqlite:
        dialect = "sqlite"

    assert open_blobs("", Sqlite()) is None
    with pytest.raises(ValueError, match="credentials"):
        open_blobs("s3://key:secret@bucket/x", Sqlite())


def test_event_logs_of_every_replica_reach_one_history_folder(tmp_path: Path) -> None:
    store = DirectoryBlobs(tmp_path / "shared", shared=True)
    replicas = [tmp_path / "a-events", tmp_path / "b-events"]
    for number, folder in enumerate(replicas):
        folder.mkdir()
        (folder / f"local-{number}").write_text(f"events of app {number}\n")
        (folder / f"local-{number}9.inprogress").write_text("still running\n")
        assert EventLogSync(store, folder, up=True).upload() == 1
    history = tmp_path / "history"
    down = EventLogSync(store, history, up=False)
    assert down.download() == 2
    assert sorted(p.name for p in history.iterdir()) == ["local-0", "local-1"]
    assert (history / "local-1").read_text() == "events of app 1\n"
    assert down.download() == 0  # nothing new
    (replicas[0] / "local-09.inprogress").rename(replicas[0] / "local-09")
    assert EventLogSync(store, replicas[0], up=True).upload() == 1  # finished: copied now
    assert down.download() == 1
