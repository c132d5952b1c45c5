"""Secure by default: a server that cannot build sandboxes says so and takes jobs from admins
only, unless told `isolation: none`; `isolation: sandbox` refuses to start without them.
Drivers get an allowlist of the server's environment, never its secrets."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from chidori.host.isolation import driver_environment
from tests.server import ChidoriServer


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "chidori.yaml"
    path.write_text(text)
    return path


# A lock folder that cannot exist: the start-up probe fails, as it does for a server that is
# not root.
BROKEN = "isolation:\n  mode: {mode}\n  lock_dir: /dev/null/identities\n"


def _plain_user(server: ChidoriServer) -> str:
    with server.client() as admin:
        assert admin.post("/api/v1/admin/users", json={"name": "pat", "role": "user"}).is_success
        token: str = admin.post("/api/v1/tokens", json={"user": "pat"}).json()["token"]
    return token


def test_without_sandboxes_only_admins_may_submit_and_readyz_says_why(tmp_path: Path) -> None:
    config = _config(tmp_path, BROKEN.format(mode="auto"))
    with ChidoriServer(tmp_path / "home", config=config) as server:
        ready = httpx.get(f"{server.url}/readyz").json()
        assert ready["status"] == "ready"
        assert "cannot be isolated" in ready["detail"] and "only admins" in ready["detail"]
        assert "ISOLATION OFF" in server.server_log()
        token = _plain_user(server)
        job = {"kind": "python", "application": "tests/jobs/sleeper.py", "args": ["0"]}
        with server.client(token) as user:
            refused = user.post("/api/v1/jobs", json=job)
        assert refused.status_code == 403, refused.text
        assert "only admins may submit" in refused.json()["error"]["message"]
        admins = server.submit(**job)
        assert server.wait(admins["id"])["state"] == "SUCCEEDED"


def test_isolation_none_is_single_tenant_on_purpose(tmp_path: Path) -> None:
    config = _config(tmp_path, BROKEN.format(mode="none"))
    with ChidoriServer(tmp_path / "home", config=config) as server:
        assert "isolation is off" in httpx.get(f"{server.url}/readyz").json()["detail"]
        token = _plain_user(server)
        with server.client(token) as user:
            job = user.post(
                "/api/v1/jobs",
                json={"kind": "python", "application": "tests/jobs/sleeper.py", "args": ["0"]},
            ).json()
        assert server.wait(job["id"])["state"] == "SUCCEEDED"


def test_isolation_sandbox_refuses_to_start_without_sandboxes(tmp_path: Path) -> None:
    config = _config(tmp_path, BROKEN.format(mode="sandbox"))
    server = ChidoriServer(tmp_path / "home", config=config)
    with pytest.raises(RuntimeError, match="isolation: sandbox was asked for"):
        server.start(timeout=30)
    server.stop()


def test_drivers_get_an_allowlist_of_the_server_environment() -> None:
    server_env = {
        "PATH": "/usr/bin",
        "LC_ALL": "C.UTF-8",
        "JAVA_HOME": "/usr/lib/jvm/java-17",
        "CHIDORI_ADMIN_TOKEN": "secret-1",
        "CHIDORI_DATABASE_URL": "postgresql://u:p@db/x",
        "AWS_SECRET_ACCESS_KEY": "secret-2",
        "MY_TEAM_SETTING": "x",
        "TEAM_BUCKET": "b",
    }
    assert driver_environment(server_env) == {
        "PATH": "/usr/bin",
        "LC_ALL": "C.UTF-8",
        "JAVA_HOME": "/usr/lib/jvm/java-17",
    }
    passed = driver_environment(server_env, ["MY_TEAM_SETTING", "TEAM_*"])
    assert passed["MY_TEAM_SETTING"] == "x" and passed["TEAM_BUCKET"] == "b"
    assert "AWS_SECRET_ACCESS_KEY" not in passed
