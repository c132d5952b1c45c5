"""JSON server logs: the formatter and its context (pure), then a live server started with
CHIDORI_LOG_FORMAT=json: only JSON lines, the job's lines carry its job id and attempt, and a
request id is echoed (the client's when sane, a new one otherwise)."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from chidori.config import ConfigError, load_settings
from chidori.observe.logs import JsonFormatter, job_context, request_context, request_id_from
from tests.server import ChidoriServer


def formatted(emit: object) -> list[dict[str, object]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("chidori.test.json")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        assert callable(emit)
        emit(logger)
    finally:
        logger.removeHandler(handler)
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_lines_carry_the_context_where_it_is_set_and_only_there() -> None:
    def emit(logger: logging.Logger) -> None:
        logger.info("before")
        with job_context(12, 2):
            logger.info("about job %d", 12)
            with request_context("req-1"):
                logger.warning("both")
        logger.info("after")

    before, about, both, after = formatted(emit)
    assert set(before) == {"time", "level", "logger", "message", "thread"}
    assert about["job_id"] == 12 and about["attempt"] == 2 and about["message"] == "about job 12"
    assert both["request_id"] == "req-1" and both["level"] == "WARNING"
    assert "job_id" not in after and "request_id" not in after
    assert str(before["time"]).endswith("+00:00")


def test_threads_do_not_inherit_the_context() -> None:
    def emit(logger: logging.Logger) -> None:
        with job_context(5, 1):
            worker = threading.Thread(target=lambda: logger.info("in a thread"))
            worker.start()
            worker.join()

    (line,) = formatted(emit)
    assert "job_id" not in line  # hence job_context where each thread's work starts


def test_an_exception_is_one_field_of_one_line() -> None:
    def emit(logger: logging.Logger) -> None:
        try:
            raise ValueError("bad\nvalue")
        except ValueError:
            logger.exception("it failed")

    (line,) = formatted(emit)
    assert line["message"] == "it failed"
    assert "Traceback" in str(line["exception"]) and "ValueError: bad" in str(line["exception"])


@pytest.mark.parametrize("header", ["abc-123", "A.b_c:9", "x" * 128])
def test_a_sane_request_id_is_kept(header: str) -> None:
    assert request_id_from(header) == header


@pytest.mark.parametrize("header", [None, "", "has space", "-leading", "x" * 129, "a\nb", "é"])
def test_anything_else_gets_a_new_request_id(header: str | None) -> None:
    generated = request_id_from(header)
    assert generated != header and len(generated) == 16
    assert request_id_from(header) != generated  # a new one each time


def test_the_log_format_setting(tmp_path: Path) -> None:
    config = tmp_path / "chidori.yaml"
    config.write_text("log_format: json\n")
    assert load_settings({}, None, tmp_path).log_format == "text"
    assert load_settings({}, config, tmp_path).log_format == "json"
    assert load_settings({"CHIDORI_LOG_FORMAT": "text"}, config, tmp_path).log_format == "text"
    with pytest.raises(ConfigError, match="log_format"):
        load_settings({"CHIDORI_LOG_FORMAT": "xml"}, None, tmp_path)


# ---- a live server ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def json_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChidoriServer]:
    home = tmp_path_factory.mktemp("json-logs")
    with ChidoriServer(home, env={"CHIDORI_LOG_FORMAT": "json"}) as running:
        yield running


def test_the_server_writes_only_json_lines_and_job_lines_name_the_job(
    json_server: ChidoriServer,
) -> None:
    ok = json_server.submit(kind="python", application="tests/jobs/sleeper.py", args=["0"])
    bad = json_server.submit(kind="python", application="tests/jobs/crash.py")
    assert json_server.wait(ok["id"])["state"] == "SUCCEEDED"
    assert json_server.wait(bad["id"])["state"] == "FAILED"
    text = json_server.log_path.read_text()
    lines = [json.loads(line) for line in text.splitlines()]  # fails on any other line
    assert len(lines) > 10
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    for job in (ok, bad):
        about = [line for line in lines if line.get("job_id") == job["id"]]
        assert about, f"no line names job {job['id']}"
        assert all(line["attempt"] == 1 for line in about)
        assert any(f"job {job['id']} attempt 1 ended" in str(line["message"]) for line in about)
    assert any(
        "ended FAILED" in str(line["message"]) and line.get("job_id") == bad["id"] for line in lines
    )


def test_the_request_id_is_echoed(json_server: ChidoriServer) -> None:
    given = httpx.get(f"{json_server.url}/healthz", headers={"X-Request-ID": "trace-42"})
    assert given.headers["x-request-id"] == "trace-42"
    refused = httpx.get(f"{json_server.url}/healthz", headers={"X-Request-ID": "no good id"})
    assert refused.headers["x-request-id"] != "no good id"
    assert len(refused.headers["x-request-id"]) == 16
    fresh = httpx.get(f"{json_server.url}/healthz")
    assert fresh.headers["x-request-id"] != refused.headers["x-request-id"]
