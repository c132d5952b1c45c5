"""The CLI against a real tiny HTTP server that speaks the contract with canned answers."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from chidori.cli import jobs, main


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # JSON object, bytes, or a list of bytes chunks (sent chunked)
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


class FakeServer:
    """Routes (METHOD, path) to a list of replies, used in turn (the last one repeats)."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], list[Reply]] = {}
        self.requests: list[Request] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def handle_any(self) -> None:
                split = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                fake.requests.append(
                    Request(self.command, split.path, parse_qs(split.query), headers, body)
                )
                replies = fake.routes.get((self.command, split.path))
                if not replies:
                    reply = Reply(404, {"error": {"code": "not_found", "message": "no route"}})
                else:
                    reply = replies.pop(0) if len(replies) > 1 else replies[0]
                self.send_response(reply.status)
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                if isinstance(reply.body, list):
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for chunk in reply.body:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                    return
                if isinstance(reply.body, bytes):
                    data, ctype = reply.body, "text/plain"
                else:
                    data, ctype = json.dumps(reply.body).encode(), "application/json"
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = handle_any

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def route(self, method: str, path: str, *replies: Reply) -> None:
        self.routes[(method, "/api/v1" + path)] = list(replies)

    def find(self, method: str, path: str) -> list[Request]:
        return [r for r in self.requests if r.method == method and r.path == "/api/v1" + path]


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeServer]:
    fake = FakeServer()
    fake.thread.start()
    monkeypatch.setenv("CHIDORI_URL", fake.url)
    monkeypatch.setenv("CHIDORI_TOKEN", "secret")
    monkeypatch.setenv("CHIDORI_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(jobs, "sleep", lambda _seconds: None)
    yield fake
    fake.httpd.shutdown()
    fake.httpd.server_close()


def job(job_id: int = 7, state: str = "QUEUED", **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": job_id, "name": "etl", "state": state, "kind": "spark", "cluster": "local",
        "queue": "default", "priority": 0, "schema": None, "table": None, "labels": {},
        "user": "admin", "created_at": "2024-05-01T10:00:00Z", "started_at": None,
        "finished_at": None, "duration_seconds": None, "attempts": 0, "reason": None,
        "spark_app_id": None, "exit_code": None, "spec": {"application": "upload://h/etl.py"},
    }  # fmt: skip
    base.update(extra)
    return base


def test_submit_uploads_local_files_and_posts_the_spec(
    server: FakeServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app = tmp_path / "etl.py"
    app.write_text("print('hello')\n")
    env = tmp_path / "env.tar.gz"
    env.write_bytes(b"archive-bytes")
    server.route(
        "POST",
        "/uploads",
        Reply(201, {"uri": "upload://aaa/etl.py", "sha256": "aaa", "size": 15}),
        Reply(201, {"uri": "upload://bbb/env.tar.gz", "sha256": "bbb", "size": 13}),
    )
    server.route("POST", "/jobs", Reply(201, job(7)))

    code = main(
        ["submit", "--idempotency-key", "run-1", "--archives", f"{env}#venv", "--queue", "etl",
         str(app), "--date", "2024-01-01"]
    )  # fmt: skip

    captured = capsys.readouterr()
    assert code == 0
    assert captured.out == "7\n"
    uploads = server.find("POST", "/uploads")
    assert len(uploads) == 2
    assert b'name="file"; filename="etl.py"' in uploads[0].body
    assert b"print('hello')" in uploads[0].body
    (post,) = server.find("POST", "/jobs")
    assert post.headers["authorization"] == "Bearer secret"
    assert post.headers["idempotency-key"] == "run-1"
    assert json.loads(post.body) == {
        "kind": "spark",
        "application": "upload://aaa/etl.py",
        "args": ["--date", "2024-01-01"],
        "queue": "etl",
        "archives": ["upload://bbb/env.tar.gz#venv"],
    }


@pytest.mark.parametrize(
    ("final", "exit_code"), [("SUCCEEDED", 0), ("FAILED", 1), ("CANCELLED", 3)]
)
def test_submit_wait_long_polls_and_exits_with_the_outcome(
    server: FakeServer, capsys: pytest.CaptureFixture[str], final: str, exit_code: int
) -> None:
    server.route("POST", "/jobs", Reply(201, job(7)))
    reason = None if final == "SUCCEEDED" else "driver exited with code 1"
    server.route(
        "GET",
        "/jobs/7/wait",
        Reply(200, job(7)),  # timed out, unchanged
        Reply(200, job(7, "RUNNING", attempts=1)),
        Reply(200, job(7, final, attempts=1, reason=reason)),
    )
    code = main(["submit", "--wait", "s3a://bucket/etl.py"])
    captured = capsys.readouterr()
    assert code == exit_code
    assert captured.out == "7\n"
    states = [line.split()[3] for line in captured.err.splitlines() if line[:2].isdigit()]
    assert states == ["QUEUED", "RUNNING", final]
    assert [r.query["state"] for r in server.find("GET", "/jobs/7/wait")] == [
        ["QUEUED"],
        ["QUEUED"],
        ["RUNNING"],
    ]
    # queued with no waiting reason yet: short polls for it; a running Spark job: short ones,
    # for its progress (a queued job with a reason long-polls: test_cli_ux)
    assert [r.query["timeout"] for r in server.find("GET", "/jobs/7/wait")] == [
        ["1"],
        ["1"],
        ["2"],
    ]
    if reason:
        assert captured.err.rstrip().endswith(f"job 7 {final}: {reason}")


def test_submit_follow_streams_the_log_then_exits_with_the_outcome(
    server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.route("POST", "/jobs", Reply(201, job(9)))
    server.route("GET", "/jobs/9/wait", Reply(200, job(9, "RUNNING", attempts=1)))
    server.route("GET", "/jobs/9/logs", Reply(200, [b"line one\n", b"line \xc3", b"\xa9two\n"]))
    server.route("GET", "/jobs/9", Reply(200, job(9, "SUCCEEDED", attempts=1)))
    code = main(["submit", "--follow", "s3a://b/app.py"])
    captured = capsys.readouterr()
    assert code == 0
    assert captured.out.startswith("line one\nline étwo\n")
    log_requests = server.find("GET", "/jobs/9/logs")
    assert log_requests[0].query["follow"] == ["true"]
    assert log_requests[0].query["offset"] == ["0"]
    # the job had ended when the stream was asked again: resumes after the bytes received
    assert log_requests[-1].query["offset"] == [str(len("line one\nline étwo\n".encode()))]
    assert "submitted job 9" in captured.err


def test_jobs_list_all_follows_cursors_with_filters(
    server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.route(
        "GET",
        "/jobs",
        Reply(200, {"items": [job(2, "FAILED")], "next_cursor": "c2"}),
        Reply(200, {"items": [job(1, "SUCCEEDED", duration_seconds=12.0)], "next_cursor": None}),
    )
    code = main(
        ["jobs", "list", "--state", "failed", "--state", "SUCCEEDED", "--label", "team:data",
         "--search", "etl", "--limit", "1", "--all"]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0
    first, second = server.find("GET", "/jobs")
    assert first.query == {
        "state": ["FAILED", "SUCCEEDED"],
        "label": ["team:data"],
        "q": ["etl"],
        "limit": ["1"],
    }
    assert second.query["cursor"] == ["c2"]
    lines = captured.out.splitlines()
    assert lines[0].startswith("ID")
    assert [line.split()[0] for line in lines[1:]] == ["2", "1"]


def test_jobs_list_json_prints_the_raw_page(
    server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    page = {"items": [job(3)], "next_cursor": "more"}
    server.route("GET", "/jobs", Reply(200, page))
    assert main(["jobs", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == page


def test_jobs_show_cancel_and_logs(server: FakeServer, capsys: pytest.CaptureFixture[str]) -> None:
    server.route("GET", "/jobs/5", Reply(200, job(5, "RUNNING", schema="s", table="t")))
    server.route(
        "GET",
        "/jobs/5/events",
        Reply(200, {"items": [{"time": "2024-05-01T10:00:00Z", "type": "state",
                               "state": "QUEUED", "attempt": None, "actor": "admin",
                               "reason": "submitted"}]}),
    )  # fmt: skip
    server.route("DELETE", "/jobs/5", Reply(200, job(5, "CANCELLED")))
    server.route("GET", "/jobs/5/logs", Reply(200, b"last line\n", {"X-Log-Offset": "120"}))

    assert main(["jobs", "show", "5"]) == 0
    out = capsys.readouterr().out
    assert "state:" in out
    assert "s.t" in out
    assert "submitted" in out

    assert main(["jobs", "show", "5", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["id"] == 5

    assert main(["jobs", "cancel", "5"]) == 0
    assert capsys.readouterr().out == "job 5 cancelled\n"

    assert main(["jobs", "logs", "5", "--tail", "1", "--attempt", "2"]) == 0
    assert capsys.readouterr().out == "last line\n"
    logs = server.find("GET", "/jobs/5/logs")[-1]
    assert logs.query == {"tail": ["1"], "attempt": ["2"], "follow": ["false"]}


def test_4xx_prints_the_error_and_its_fields_and_exits_2(
    server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    error = {
        "error": {
            "code": "invalid_spec",
            "message": "the job spec is invalid",
            "fields": [{"field": "driver_memory", "message": "not a size: 'lots'"}],
        }
    }
    server.route("POST", "/jobs", Reply(422, error))
    code = main(["submit", "--driver-memory", "lots", "s3a://b/app.py"])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    assert captured.err == "error: the job spec is invalid\n  driver_memory: not a size: 'lots'\n"


def test_5xx_exits_7_without_a_traceback(
    server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.route("GET", "/jobs/1", Reply(503, b"upstream down"))
    assert main(["jobs", "show", "1"]) == 7
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert "Traceback" not in err


def test_unreachable_server_is_one_line_and_exit_7(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("CHIDORI_URL", f"http://127.0.0.1:{port}")
    assert main(["jobs", "list"]) == 7
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"http://127.0.0.1:{port}" in err
    assert "chidori server" in err
