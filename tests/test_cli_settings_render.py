"""Server URL/token resolution and the CLI's output formatting."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from chidori.cli.client import ApiError, FieldError, ServerUnreachable
from chidori.cli.output import Output
from chidori.cli.settings import DEFAULT_URL, resolve, resolve_token, resolve_url
from chidori.cli.views.cells import align, format_duration


def test_url_flag_beats_env_beats_default() -> None:
    env = {"CHIDORI_URL": "http://env:1/"}
    assert resolve_url("http://flag:2", env) == "http://flag:2"
    assert resolve_url(None, env) == "http://env:1"
    assert resolve_url(None, {}) == DEFAULT_URL
    assert resolve_url(None, {"CHIDORI_URL": ""}) == DEFAULT_URL
    assert resolve_url("myhost:8080", {}) == "http://myhost:8080"


def test_token_flag_beats_env_beats_admin_token_file(tmp_path: Path) -> None:
    (tmp_path / "admin.token").write_text("from-file\n")
    env = {"CHIDORI_HOME": str(tmp_path), "CHIDORI_TOKEN": "from-env"}
    assert resolve_token("from-flag", env) == "from-flag"
    assert resolve_token(None, env) == "from-env"
    assert resolve_token(None, {"CHIDORI_HOME": str(tmp_path)}) == "from-file"
    assert resolve_token(None, {"CHIDORI_HOME": str(tmp_path / "absent")}) is None


def test_chidori_home_defaults_to_dot_chidori_in_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".chidori").mkdir()
    (tmp_path / ".chidori" / "admin.token").write_text("local-admin")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CHIDORI_HOME", raising=False)
    monkeypatch.delenv("CHIDORI_TOKEN", raising=False)
    monkeypatch.delenv("CHIDORI_URL", raising=False)
    settings = resolve()
    assert settings.token == "local-admin"
    assert settings.url == DEFAULT_URL


def make_output() -> tuple[Output, io.StringIO, io.StringIO]:
    stdout, stderr = io.StringIO(), io.StringIO()
    return Output(stdout, stderr), stdout, stderr


def test_api_error_prints_message_then_one_line_per_field() -> None:
    out, stdout, stderr = make_output()
    out.api_error(
        ApiError(
            422,
            "invalid_spec",
            "the job spec is invalid",
            [FieldError("driver_memory", "not a size"), FieldError("queue", "no such queue")],
        )
    )
    assert stdout.getvalue() == ""
    assert stderr.getvalue() == (
        "error: the job spec is invalid\n  driver_memory: not a size\n  queue: no such queue\n"
    )


def test_unreachable_names_the_url_and_suggests_a_fix() -> None:
    out, _, stderr = make_output()
    out.unreachable(ServerUnreachable("http://10.0.0.1:8080", "connection refused"))
    line = stderr.getvalue()
    assert line.count("\n") == 1
    assert "http://10.0.0.1:8080" in line
    assert "chidori server" in line
    assert "CHIDORI_URL" in line


def test_output_is_plain_when_not_a_terminal() -> None:
    out, stdout, _ = make_output()
    assert not out.human
    out.job_list(
        [
            {
                "id": 12,
                "name": "nightly",
                "state": "RUNNING",
                "kind": "spark",
                "cluster": "local",
                "queue": "default",
                "schema": "sales",
                "table": "orders",
                "created_at": None,
                "duration_seconds": 75.0,
                "attempts": 1,
            }
        ]
    )
    lines = stdout.getvalue().splitlines()
    assert lines[0].split() == [
        "ID", "NAME", "STATE", "KIND", "CLUSTER", "QUEUE", "TABLE", "CREATED", "DURATION",
        "ATTEMPTS",
    ]  # fmt: skip
    assert lines[1].split() == [
        "12", "nightly", "RUNNING", "spark", "local", "default", "sales.orders", "-", "1m15s", "1",
    ]  # fmt: skip
    assert "\x1b[" not in stdout.getvalue()


def test_human_output_uses_rich_table() -> None:
    out = Output(io.StringIO(), io.StringIO(), human=True)
    out.job_list([{"id": 1, "name": "a", "state": "FAILED"}])
    assert isinstance(out.stdout, io.StringIO)
    text = out.stdout.getvalue()
    assert "FAILED" in text
    assert "ID" in text


def test_align_pads_all_but_last_column() -> None:
    assert align([["a", "bb", "c"], ["ccc", "d", "eeee"]]) == ["a    bb  c", "ccc  d   eeee"]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "-"), (2.345, "2.3s"), (42, "42s"), (185, "3m05s"), (3725, "1h02m05s")],
)
def test_format_duration(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text


def test_api_error_does_not_repeat_a_field_error_that_is_the_message() -> None:
    out, _, stderr = make_output()
    out.api_error(
        ApiError(
            422, "invalid", "expires_in: at most 366d", [FieldError("expires_in", "at most 366d")]
        )
    )
    assert stderr.getvalue() == "error: expires_in: at most 366d\n"
