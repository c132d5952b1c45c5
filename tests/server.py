"""A real `chidori server` process for tests: started on a free port, stopped or killed."""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED"}


def shared_markers(tmp_path: Path) -> Path:
    """A folder every job may write its run markers into (CHIDORI_SHARED_DIRS)."""
    markers = tmp_path / "markers"
    markers.mkdir(exist_ok=True)
    markers.chmod(0o1777)
    return markers


def processes_of_uid(uid: int) -> list[int]:
    """Live processes of one OS user (a sandboxed job's identity)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if entry.stat().st_uid == uid and state != "Z":
                    found.append(int(entry.name))
            except (OSError, IndexError):
                continue
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ChidoriServer:
    """One server process with its own CHIDORI_HOME. Restartable on the same home and port."""

    def __init__(
        self,
        home: Path,
        *,
        token: str = "test-admin-token",
        config: Path | None = None,
        env: dict[str, str] | None = None,
        app_roots: list[Path] | None = None,
        spark_rest_port: int | None = None,
        wrapper: list[str] | None = None,
    ) -> None:
        """`wrapper`: a command that execs the server (argv appended), e.g. one that gives it
        a mount namespace of its own, so replicas behave as separate hosts."""
        self.home = home
        self.wrapper = wrapper or []
        self.token = token
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = config
        self.extra_env = env or {}
        self.app_roots = app_roots or [REPO]
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = home / "server.log"
        # Spark's REST submission listener, when a port is given (CHIDORI_SPARK_REST_PORT).
        self.spark_rest_port = spark_rest_port
        self.spark_rest_url = f"http://127.0.0.1:{spark_rest_port}" if spark_rest_port else None

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "CHIDORI_HOME": str(self.home),
                "CHIDORI_PORT": str(self.port),
                "CHIDORI_HOST": "127.0.0.1",
                "CHIDORI_ADMIN_TOKEN": self.token,
                "CHIDORI_APP_ROOTS": os.pathsep.join(str(p) for p in self.app_roots),
                "SPARK_LOCAL_IP": "127.0.0.1",
            }
        )
        env.pop("CHIDORI_CONFIG", None)
        env.pop("CHIDORI_DATABASE_URL", None)
        if self.spark_rest_port:
            env["CHIDORI_SPARK_REST_PORT"] = str(self.spark_rest_port)
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 60) -> ChidoriServer:
        self.home.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "chidori", "server"]
        if self.config is not None:
            argv += ["--config", str(self.config)]
        argv = [*self.wrapper, *argv]
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps it open
        self.process = subprocess.Popen(
            argv, env=self.environment(), stdout=log, stderr=subprocess.STDOUT, cwd=REPO
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited at start:\n{self.server_log()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200 and (
                    self._spark_rest_answers()
                ):
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server not ready in {timeout} s:\n{self.server_log()}")

    def _spark_rest_answers(self) -> bool:
        """The REST listener, if any, answers (anything, even 403): it starts just after the
        main app."""
        if self.spark_rest_url is None:
            return True
        try:
            httpx.get(f"{self.spark_rest_url}/v1/submissions/readyz", timeout=1)
        except httpx.HTTPError:
            return False
        return True

    def server_log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-5000:]
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def client(self, token: str | None = None) -> httpx.Client:
        return httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token or self.token}"},
            timeout=70,
        )

    def submit(self, **spec: Any) -> dict[str, Any]:
        with self.client() as client:
            response = client.post("/api/v1/jobs", json=spec)
            assert response.status_code == 201, response.text
            job: dict[str, Any] = response.json()
            return job

    def wait(
        self, job_id: int, until: set[str] | None = None, timeout: float = 240
    ) -> dict[str, Any]:
        """Long-poll until the job is in one of `until` (default: a terminal state)."""
        until = until or TERMINAL
        deadline = time.monotonic() + timeout
        with self.client() as client:
            job: dict[str, Any] = client.get(f"/api/v1/jobs/{job_id}").json()
            while job["state"] not in until:
                if time.monotonic() > deadline:
                    raise AssertionError(f"job {job_id} still {job['state']} after {timeout} s")
                response = client.get(
                    f"/api/v1/jobs/{job_id}/wait", params={"state": job["state"], "timeout": 20}
                )
                assert response.status_code == 200, response.text
                job = response.json()
            return job

    def log(self, job_id: int, **params: Any) -> str:
        with self.client() as client:
            response = client.get(f"/api/v1/jobs/{job_id}/logs", params=params)
            assert response.status_code == 200, response.text
            return response.text

    def __enter__(self) -> ChidoriServer:
        return self.start()

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.stop()


def add_spark_rest_user(server: ChidoriServer, user: str) -> None:
    """Create `user` and make it the Spark REST listener's run-as user. The listener will not
    start without one (or a JWS secret), and the user must exist first: so one start with a
    throwaway secret creates it. The server is stopped again on return."""
    secret = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
    server.extra_env["CHIDORI_SPARK_REST_JWS_SECRET"] = secret
    with server, server.client() as client:
        created = client.post("/api/v1/admin/users", json={"name": user})
        assert created.status_code == 201, created.text
    del server.extra_env["CHIDORI_SPARK_REST_JWS_SECRET"]
    server.extra_env["CHIDORI_SPARK_REST_USER"] = user
