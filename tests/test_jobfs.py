"""The server reads and writes in folders a sandboxed job controls without following the
job's links: a planted symlink never makes it read or overwrite one of its own files."""

from __future__ import annotations

import os
from pathlib import Path

from chidori.host.jobfs import JobFolder


def test_reads_plain_files_and_refuses_links_and_hard_links(tmp_path: Path) -> None:
    secret = tmp_path / "secret.key"
    secret.write_text("do not read me")
    control = tmp_path / "work" / "7" / "attempt-1" / "control"
    (control / "out").mkdir(parents=True)
    (control / "out" / "0.json").write_text('{"ok": true}')
    (control / "out" / "1.json").symlink_to(secret)
    os.link(secret, control / "out" / "2.json")
    folder = JobFolder(tmp_path / "work" / "7", ["attempt-1", "control"])
    assert folder.read("out", "0.json") == b'{"ok": true}'
    assert folder.read("out", "1.json") is None
    assert folder.read("out", "2.json") is None
    assert folder.read("out", "9.json") is None
    assert folder.read("out", "0.json", limit=3) == b'{"o'


def test_a_folder_swapped_for_a_link_is_neither_read_nor_written_through(
    tmp_path: Path,
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "0.json").write_text("server file")
    control = tmp_path / "work" / "7" / "attempt-1" / "control"
    control.mkdir(parents=True)
    (control / "in").symlink_to(elsewhere)
    (control / "out").symlink_to(elsewhere)
    folder = JobFolder(tmp_path / "work" / "7", ["attempt-1", "control"])
    assert folder.write("in", "0.json", data=b"statement") is False
    assert (elsewhere / "0.json").read_text() == "server file"
    assert folder.read("out", "0.json") is None
    assert folder.exists("in") is True  # the link itself is there; it is not followed
    assert folder.exists("in", "0.json") is False


def test_writes_replace_a_planted_link_instead_of_following_it(tmp_path: Path) -> None:
    target = tmp_path / "passwd"
    target.write_text("root:x:0:0")
    control = tmp_path / "warm" / "w1"
    control.mkdir(parents=True)
    (control / "job.json").symlink_to(target)
    folder = JobFolder(tmp_path / "warm", ["w1"])
    assert folder.write("job.json", data=b"{}") is True
    assert target.read_text() == "root:x:0:0"
    assert (control / "job.json").read_text() == "{}"
    assert not (control / "job.json").is_symlink()
    assert folder.write("new", "deeper", "x", data=b"1") is True
    assert (control / "new" / "deeper" / "x").read_text() == "1"
