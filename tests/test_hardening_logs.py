"""Driver logs of any size are answered in capped windows and streamed, never read whole
(issue 23, defect 5), through every door: the REST API, Livy batches, downloads, share links
and follow streams. One server; one job writes a 4 MB log (four line-index blocks)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import httpx
import pytest

from tests.server import ChidoriServer

LINES, WIDTH = 40_000, 100  # 4,000,000 bytes of the job's own lines
CAP = 1024 * 1024  # chidori.storage.logfiles.MAX_ANSWER_BYTES, the most one answer carries


@dataclass
class BigLog:
    job_id: int
    whole: bytes  # the download, checked below against the windows and the job's lines


@pytest.fixture(scope="module")
def big(server: ChidoriServer) -> BigLog:
    job = server.submit(
        kind="python", application="tests/jobs/big_log.py", args=[str(LINES), str(WIDTH)]
    )
    assert server.wait(job["id"], timeout=120)["state"] == "SUCCEEDED"
    with server.client() as client:
        answer = client.get(f"/api/v1/jobs/{job['id']}/logs/download")
    assert answer.status_code == 200
    assert int(answer.headers["content-length"]) == len(answer.content)
    assert "attachment" in answer.headers["content-disposition"]
    return BigLog(job["id"], answer.content)


def job_line(number: int) -> bytes:
    return f"{number:08d} {'x' * (WIDTH - 10)}\n".encode()


def test_the_download_holds_every_line_the_job_wrote(big: BigLog) -> None:
    body = b"".join(job_line(n) for n in range(LINES))
    assert body in big.whole, "the job's lines, in order and whole"
    assert len(big.whole) >= LINES * WIDTH


def test_windows_are_capped_and_add_up_to_the_download(server: ChidoriServer, big: BigLog) -> None:
    pieces, offset, answers = [], 0, 0
    with server.client() as client:
        while True:
            answer = client.get(f"/api/v1/jobs/{big.job_id}/logs", params={"offset": offset})
            assert answer.status_code == 200
            assert len(answer.content) <= CAP
            assert int(answer.headers["X-Log-Size"]) == len(big.whole)
            pieces.append(answer.content)
            answers += 1
            offset = int(answer.headers["X-Log-Offset"])
            if offset >= len(big.whole):
                break
            assert answer.content.endswith(b"\n"), "a window that stops early ends after a line"
    assert answers >= 4
    assert b"".join(pieces) == big.whole


def test_a_tail_larger_than_the_cap_is_the_last_mib_from_a_line_start(
    server: ChidoriServer, big: BigLog
) -> None:
    with server.client() as client:
        answer = client.get(f"/api/v1/jobs/{big.job_id}/logs", params={"tail": 1_000_000})
        few = client.get(f"/api/v1/jobs/{big.job_id}/logs", params={"tail": 3})
    assert answer.status_code == 200 and 0 < len(answer.content) <= CAP
    assert big.whole.endswith(answer.content)
    assert big.whole[-len(answer.content) - 1 : -len(answer.content)] == b"\n"
    assert few.content == b"".join(big.whole.splitlines(keepends=True)[-3:])


def test_livy_log_windows_number_lines_across_blocks(server: ChidoriServer, big: BigLog) -> None:
    every = big.whole.decode().splitlines()
    first = every.index(job_line(0).decode().rstrip("\n"))
    with server.client() as client:
        for start in (first + 12_345, first + 31_000, len(every) - 5):
            answer = client.get(f"/batches/{big.job_id}/log", params={"from": start, "size": 7})
            assert answer.status_code == 200, answer.text
            window = answer.json()
            assert window["total"] == len(every)
            assert window["from"] == start
            assert window["log"] == every[start : start + 7]
        huge = client.get(f"/batches/{big.job_id}/log", params={"from": 0, "size": 100_000})
    lines = huge.json()["log"]
    assert 0 < len(lines) < len(every), "an answer holds at most a MiB of lines"
    assert sum(len(line) + 1 for line in lines) <= CAP
    assert lines == every[: len(lines)]


def test_a_share_link_downloads_the_same_bytes(server: ChidoriServer, big: BigLog) -> None:
    with server.client() as client:
        url = client.post(f"/api/v1/jobs/{big.job_id}/share", json={}).json()["url"]
    token = url.rstrip("/").rsplit("/", 1)[-1]
    download = httpx.get(f"{server.url}/s/{token}/log/download", timeout=30)
    window = httpx.get(f"{server.url}/s/{token}/log", timeout=30)
    assert download.status_code == 200 and download.content == big.whole
    assert window.status_code == 200 and len(window.content) <= CAP


@pytest.fixture
def plain_user(server: ChidoriServer) -> tuple[str, int]:
    """A fresh plain user and one token of theirs (token, id)."""
    name = f"follower{time.monotonic_ns() % 10**9}"
    with server.client() as admin:
        made = admin.post("/api/v1/admin/users", json={"name": name, "role": "user"})
        assert made.status_code == 201, made.text
        token = admin.post("/api/v1/tokens", json={"user": name, "name": "t"}).json()
    return token["token"], token["id"]


def test_a_follow_stream_ends_soon_after_its_token_is_revoked(
    server: ChidoriServer, plain_user: tuple[str, int]
) -> None:
    token, token_id = plain_user
    with server.client(token) as user:
        job = user.post(
            "/api/v1/jobs",
            json={"kind": "python", "application": "tests/jobs/sleeper.py", "args": ["120"]},
        ).json()
    server.wait(job["id"], until={"RUNNING"}, timeout=60)
    ended = threading.Event()
    received: list[bytes] = []

    def follow() -> None:
        with httpx.stream(
            "GET",
            f"{server.url}/api/v1/jobs/{job['id']}/logs",
            params={"follow": "true"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(10, read=None),
        ) as stream:
            assert stream.status_code == 200
            for chunk in stream.iter_bytes():
                received.append(chunk)
        ended.set()

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    try:
        time.sleep(1.5)
        assert not ended.is_set(), "the stream follows a running job"
        with server.client() as admin:
            assert admin.delete(f"/api/v1/tokens/{token_id}").status_code in (200, 204)
        revoked = time.monotonic()
        assert ended.wait(15), "the stream outlived its token"
        assert time.monotonic() - revoked < 10
        assert server.wait(job["id"], until={"RUNNING"}, timeout=5)["state"] == "RUNNING"
    finally:
        with server.client() as admin:
            admin.delete(f"/api/v1/jobs/{job['id']}")
        follower.join(20)
