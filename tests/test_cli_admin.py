"""``chidori whoami``, ``tokens`` and ``admin users|policy|audit`` against a real tiny server."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chidori.cli import main
from chidori.cli.admin import PolicyChanges, merge_policy
from chidori.cli.errors import UsageError
from chidori.cli.output import Output
from chidori.cli.views.admin import policy_pairs
from chidori.cli.views.identity import STATUS_STYLES, USER_COLUMNS, user_row
from tests.test_cli_http import FakeServer, Reply


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeServer]:
    fake = FakeServer()
    fake.thread.start()
    monkeypatch.setenv("CHIDORI_URL", fake.url)
    monkeypatch.setenv("CHIDORI_TOKEN", "secret")
    monkeypatch.setenv("CHIDORI_HOME", str(tmp_path / "home"))
    yield fake
    fake.httpd.shutdown()
    fake.httpd.server_close()


def user(name: str = "ana", **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": name, "role": "user", "team": "data", "clusters": None, "queues": ["etl"],
        "disabled": False, "created_at": "2024-05-01T10:00:00Z",
    }  # fmt: skip
    base.update(extra)
    return base


def token(token_id: int = 4, **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": token_id, "user": "ana", "name": "ci", "prefix": "chd_ab12",
        "created_at": "2024-05-01T10:00:00Z", "expires_at": "2999-01-01T00:00:00Z",
        "revoked_at": None,
    }  # fmt: skip
    base.update(extra)
    return base


def policy(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "max_driver_memory": "2g", "max_driver_cores": 2, "max_executor_memory": None,
        "max_executor_cores": None, "max_executor_instances": 10,
        "forbidden_conf": ["spark.master", "spark.driver.extraJavaOptions"],
        "allowed_schemes": ["gs", "s3a"], "admins_exempt": True,
    }  # fmt: skip
    base.update(extra)
    return base


def body(request: Any) -> Any:
    return json.loads(request.body)


# -- whoami and tokens ---------------------------------------------------------------------


def test_whoami_prints_name_role_team_and_sends_the_token(
    server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.route("GET", "/whoami", Reply(200, {"name": "ana", "role": "admin", "team": None}))
    assert main(["whoami"]) == 0
    assert capsys.readouterr().out == "name:  ana\nrole:  admin\nteam:  -\n"
    (request,) = server.find("GET", "/whoami")
    assert request.headers["authorization"] == "Bearer secret"

    assert main(["whoami", "--json", "--token", "other"]) == 0
    assert json.loads(capsys.readouterr().out)["role"] == "admin"
    assert server.find("GET", "/whoami")[-1].headers["authorization"] == "Bearer other"


def test_tokens_create_prints_only_the_secret_on_stdout(
    server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.route("POST", "/tokens", Reply(201, {**token(9), "token": "chd_ab12_SECRET"}))
    assert main(["tokens", "create", "--name", "ci", "--user", "bob", "--expires", "30d"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "chd_ab12_SECRET\n"
    assert "shown only this once" in captured.err
    assert "chd_ab12_SECRET" not in captured.err
    (request,) = server.find("POST", "/tokens")
    assert body(request) == {"name": "ci", "user": "bob", "expires_in": "30d"}


def test_tokens_create_without_options_sends_an_empty_body_and_json_prints_all(
    server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    created = {**token(9), "token": "chd_ab12_SECRET"}
    server.route("POST", "/tokens", Reply(201, created))
    assert main(["tokens", "create", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == created
    assert body(server.find("POST", "/tokens")[0]) == {}


def test_tokens_list_filters_by_user_and_shows_status(
    server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    items = [
        token(1),
        token(2, revoked_at="2024-05-02T00:00:00Z"),
        token(3, expires_at="2024-06-01T00:00:00Z"),
    ]
    server.route("GET", "/tokens", Reply(200, {"items": items}))
    assert main(["tokens", "list", "--user", "ana"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["ID", "USER", "NAME", "PREFIX", "CREATED", "EXPIRES", "STATUS"]
    assert [(line.split()[0], line.split()[-1]) for line in lines[1:]] == [
        ("1", "active"),
        ("2", "revoked"),
        ("3", "expired"),
    ]
    assert server.find("GET", "/tokens")[0].query == {"user": ["ana"]}

    assert main(["tokens", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"items": items}
    assert server.find("GET", "/tokens")[-1].query == {}


def test_tokens_revoke_deletes_by_id(
    server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.route("DELETE", "/tokens/4", Reply(200, token(4, revoked_at="2024-05-02T00:00:00Z")))
    assert main(["tokens", "revoke", "4"]) == 0
    assert capsys.readouterr().out == "token 4 revoked\n"
    assert len(server.find("DELETE", "/tokens/4")) == 1


# -- users ---------------------------------------------------------------------------------


def test_admin_users_list_renders_a_table(
    server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.route(
        "GET",
        "/admin/users",
        Reply(200, {"items": [user("ana"), user("bob", role="viewer", disabled=True, queues=[])]}),
    )
    assert main(["admin", "users", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:6] == ["NAME", "ROLE", "TEAM", "CLUSTERS", "QUEUES", "STATUS"]
    assert lines[1].split()[:6] == ["ana", "user", "data", "(all)", "etl", "active"]
    assert lines[2].split()[:6] == ["bob", "viewer", "data", "(all)", "(none)", "disabled"]


def test_admin_users_add_posts_only_the_given_fields(
    server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.route("POST", "/admin/users", Reply(201, user("carl", clusters=["local", "k8s"])))
    code = main(
        ["admin", "users", "add", "carl", "--role", "user", "--team", "data",
         "--cluster", "local", "--cluster", "k8s"]
    )  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "name:      carl\n" in out
    assert "clusters:  local, k8s\n" in out
    assert body(server.find("POST", "/admin/users")[0]) == {
        "name": "carl",
        "role": "user",
        "team": "data",
        "clusters": ["local", "k8s"],
    }

    assert main(["admin", "users", "add", "dora", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "carl"
    assert body(server.find("POST", "/admin/users")[-1]) == {"name": "dora"}


@pytest.mark.parametrize(
    ("flags", "patch"),
    [
        (["--role", "admin", "--disable"], {"role": "admin", "disabled": True}),
        (["--all-clusters", "--queue", "a", "--queue", "b"],
         {"clusters": None, "queues": ["a", "b"]}),
        (["--cluster", "local", "--all-queues", "--enable"],
         {"clusters": ["local"], "queues": None, "disabled": False}),
        (["--team", "ml"], {"team": "ml"}),
    ],
)  # fmt: skip
def test_admin_users_update_patches_only_what_is_given(
    server: FakeServer, capsys: pytest.CaptureFixture[str], flags: list[str], patch: Any
) -> None:
    server.route("PATCH", "/admin/users/ana", Reply(200, user("ana")))
    assert main(["admin", "users", "update", "ana", *flags]) == 0
    assert "name:" in capsys.readouterr().out
    assert body(server.find("PATCH", "/admin/users/ana")[0]) == patch


def test_admin_users_update_with_nothing_to_change_is_a_usage_error(
    server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["admin", "users", "update", "ana"]) == 2
    assert capsys.readouterr().err.startswith("error: nothing to change")
    assert server.requests == []


def test_403_prints_the_error_and_exits_5(
    server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    error = {
        "error": {
            "code": "forbidden",
            "message": "admins only",
            "fields": [{"field": "role", "message": "'viewer' may not manage users"}],
        }
    }
    server.route("GET", "/admin/users", Reply(403, error))
    assert main(["admin", "users", "list"]) == 5
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "error: admins only\n  role: 'viewer' may not manage users\n"


# -- policy --------------------------------------------------------------------------------


def test_admin_policy_show(server: FakeServer, capsys: pytest.CaptureFixture[str]) -> None:
    server.route("GET", "/admin/policy", Reply(200, policy()))
    assert main(["admin", "policy", "show"]) == 0
    out = capsys.readouterr().out
    assert "max driver memory:       2g\n" in out
    assert "max executor memory:     none\n" in out
    assert "forbidden conf:          spark.master, spark.driver.extraJavaOptions\n" in out
    assert "admins exempt:           yes\n" in out

    assert main(["admin", "policy", "show", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == policy()


def test_admin_policy_set_reads_merges_and_puts_the_whole_policy(
    server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.route("GET", "/admin/policy", Reply(200, policy()))
    stored = policy(max_driver_memory="4g", max_driver_cores=None)
    server.route("PUT", "/admin/policy", Reply(200, stored))
    code = main(
        ["admin", "policy", "set", "--max-driver-memory", "4g", "--max-driver-cores", "none",
         "--forbid-conf", "spark.kubernetes.*", "--allow-conf", "SPARK.MASTER",
         "--allowed-schemes", "s3a, abfss", "--json"]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0
    assert json.loads(captured.out) == stored
    (put,) = server.find("PUT", "/admin/policy")
    assert body(put) == {
        "max_driver_memory": "4g",
        "max_driver_cores": None,
        "max_executor_memory": None,
        "max_executor_cores": None,
        "max_executor_instances": 10,
        "forbidden_conf": ["spark.driver.extraJavaOptions", "spark.kubernetes.*"],
        "allowed_schemes": ["s3a", "abfss"],
        "admins_exempt": True,
    }
    assert [r.method for r in server.requests] == ["GET", "PUT"]


def test_admin_policy_set_notes_an_allow_that_was_not_forbidden(
    server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.route("GET", "/admin/policy", Reply(200, policy()))
    server.route("PUT", "/admin/policy", Reply(200, policy()))
    assert main(["admin", "policy", "set", "--allow-conf", "spark.nope"]) == 0
    captured = capsys.readouterr()
    assert "'spark.nope' was not a forbidden conf pattern" in captured.err
    assert "max driver memory:" in captured.out


def test_admin_policy_set_without_changes_sends_nothing(
    server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["admin", "policy", "set"]) == 2
    assert "nothing to change" in capsys.readouterr().err
    assert server.requests == []


def test_admin_policy_set_rejects_a_bad_number_before_any_request(
    server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["admin", "policy", "set", "--max-executor-cores", "many"]) == 2
    assert "expected a whole number or 'none'" in capsys.readouterr().err
    assert server.requests == []


def test_merge_policy_changes_only_what_is_asked_and_keeps_the_input() -> None:
    current = policy()
    before = json.loads(json.dumps(current))
    merged = merge_policy(
        current,
        PolicyChanges(
            caps={"max_executor_memory": "8g", "max_executor_instances": None},
            forbid=["SPARK.MASTER", "spark.jars.*"],
            allow=["spark.driver.extrajavaoptions"],
            admins_exempt=False,
        ),
    )
    assert current == before
    assert merged == {
        **before,
        "max_executor_memory": "8g",
        "max_executor_instances": None,
        "forbidden_conf": ["spark.master", "spark.jars.*"],
        "admins_exempt": False,
    }
    assert merge_policy(current, PolicyChanges()) == before
    assert merge_policy(current, PolicyChanges(allowed_schemes=[]))["allowed_schemes"] == []


def test_merge_policy_refuses_a_pattern_both_forbidden_and_allowed() -> None:
    with pytest.raises(UsageError, match="both forbidden and allowed"):
        merge_policy(policy(), PolicyChanges(forbid=["spark.x"], allow=["SPARK.X"]))


# -- audit ---------------------------------------------------------------------------------


def entry(entry_id: int, action: str = "user.create") -> dict[str, Any]:
    return {
        "id": entry_id, "time": "2024-05-01T10:00:00Z", "actor": "admin", "action": action,
        "target": "ana", "source": "127.0.0.1", "detail": {"role": "user", "queues": ["etl"]},
    }  # fmt: skip


def test_admin_audit_one_page_then_all_pages(
    server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.route(
        "GET",
        "/admin/audit",
        Reply(200, {"items": [entry(3)], "next_cursor": "c2"}),
        Reply(200, {"items": [entry(2, "token.create")], "next_cursor": "c1"}),
        Reply(200, {"items": [entry(1, "policy.set")], "next_cursor": None}),
    )
    assert main(["admin", "audit", "--limit", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["ID", "TIME", "ACTOR", "ACTION", "TARGET", "SOURCE", "DETAIL"]
    assert len(lines) == 2
    assert lines[1].split()[0] == "3"
    assert lines[1].endswith('role=user queues=["etl"]')
    assert server.find("GET", "/admin/audit")[0].query == {"limit": ["1"]}

    assert main(["admin", "audit", "--all", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [e["id"] for e in printed["items"]] == [2, 1]
    assert printed["next_cursor"] is None
    queries = [r.query for r in server.find("GET", "/admin/audit")[1:]]
    assert queries == [{}, {"cursor": ["c1"]}]


def test_terminal_output_renders_tables_pairs_and_warnings_without_markup() -> None:
    stdout, stderr = io.StringIO(), io.StringIO()
    out = Output(stdout, stderr, human=True)
    out.table(USER_COLUMNS, [user_row(user("ana", team="[red]x[/red]"))], styles=STATUS_STYLES)
    out.pairs(policy_pairs(policy(forbidden_conf=["spark.[a-z]*"])))
    out.warn("shown only once")
    printed = stdout.getvalue()
    assert "NAME" in printed
    assert "[red]x[/red]" in printed
    assert "spark.[a-z]*" in printed
    assert stderr.getvalue() == "warning: shown only once\n"
