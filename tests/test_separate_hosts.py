"""Replicas as separate hosts: each has its own CHIDORI_HOME, which the other cannot see (each
runs in a mount namespace of its own, with the other's host folder covered by an empty
tmpfs). They share only PostgreSQL, RabbitMQ and an object store (moto's S3 server standing in
for S3: see tests/s3.py). Uploads, logs and share links work through either replica, and a
replica killed with kill -9 loses no job."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3  # type: ignore[import-untyped]
import httpx
import pytest

from tests.s3 import BUCKET, s3_server
from tests.server import REPO, ChidoriServer
from tests.test_queue_contract import delete_rabbitmq_queue, rabbitmq_url_or_skip, unique_queue_name

JOB = """\
import sys, time
from helper import greeting
print(greeting(), flush=True)
for i in range(int(sys.argv[1])):
    print(f"tick {i}", flush=True)
    time.sleep(float(sys.argv[2]))
print("done", flush=True)
"""


def separate_host(hidden: Path) -> list[str]:
    """A wrapper giving the server its own mount namespace, with `hidden` (the other host's
    folder) covered by an empty tmpfs."""
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("separate hosts need root and unshare (CI runs as root)")
    script = 'mount -t tmpfs -o size=1m,mode=0700 tmpfs "$0" && exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(hidden)]


@pytest.fixture
def hosts(postgres_schema_url: str, tmp_path: Path) -> Iterator[tuple[ChidoriServer, ...]]:
    broker = rabbitmq_url_or_skip()
    queue = unique_queue_name()
    with s3_server() as s3_env:
        env = {
            **s3_env,
            "CHIDORI_DATABASE_URL": postgres_schema_url,
            "CHIDORI_QUEUE_URL": f"{broker}?queue={queue}",
            # No CHIDORI_SECRET_KEY: the replicas agree on one through the database.
            "CHIDORI_STORAGE_URL": f"s3://{BUCKET}/{tmp_path.name}",
            "CHIDORI_LEASE_SECONDS": "6",
        }
        config = tmp_path / "chidori.yaml"
        config.write_text("security:\n  submit_rate_per_second: 0\n")
        config.chmod(0o644)
        a_dir, b_dir = tmp_path / "host-a", tmp_path / "host-b"
        for folder in (a_dir, b_dir):
            folder.mkdir()
        servers = (
            ChidoriServer(a_dir / "home", env=env, config=config, wrapper=separate_host(b_dir)),
            ChidoriServer(b_dir / "home", env=env, config=config, wrapper=separate_host(a_dir)),
        )
        try:
            yield servers
        finally:
            for server in servers:
                server.stop()
            delete_rabbitmq_queue(broker, queue)


def cli(server: ChidoriServer, token: str, *args: str) -> str:
    env = dict(os.environ, CHIDORI_URL=server.url, CHIDORI_TOKEN=token)
    done = subprocess.run(
        [sys.executable, "-m", "chidori", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def follow(server: ChidoriServer, token: str, job_id: int, until: str, timeout: float) -> str:
    """Follow a job's log through `server` until `until` appears (or the stream ends)."""
    seen = ""
    with (
        httpx.Client(base_url=server.url, timeout=timeout) as client,
        client.stream(
            "GET",
            f"/api/v1/jobs/{job_id}/logs",
            params={"follow": "true"},
            headers={"Authorization": f"Bearer {token}"},
        ) as stream,
    ):
        assert stream.status_code == 200
        for piece in stream.iter_text():
            seen += piece
            if until in seen:
                break
    return seen


def test_replicas_on_separate_hosts_share_uploads_and_logs_and_lose_nothing(
    hosts: tuple[ChidoriServer, ChidoriServer], tmp_path: Path
) -> None:
    a, b = hosts
    a.start()
    with a.client() as admin:
        assert admin.post("/api/v1/admin/users", json={"name": "pat"}).status_code == 201
        token = admin.post("/api/v1/tokens", json={"user": "pat"}).json()["token"]
    # The job's files live only on the submitter's machine: `chidori submit` uploads them.
    work = tmp_path / "laptop"
    work.mkdir()
    (work / "job.py").write_text(JOB)
    (work / "helper.py").write_text("def greeting():\n    return 'hello from helper'\n")

    def submit(ticks: int, pause: float) -> int:
        out = cli(a, token, "submit", "--kind", "python", "--py-files", str(work / "helper.py"),
                  str(work / "job.py"), str(ticks), str(pause))  # fmt: skip
        return int(out.split()[-1])

    finished = submit(3, 0.01)
    assert a.wait(finished, timeout=120)["state"] == "SUCCEEDED"
    with a.client(token) as client:
        share = client.post(f"/api/v1/jobs/{finished}/share", json={}).json()["url"]
    running = [submit(400, 0.05) for _ in range(3)]  # about 20 s each
    for job_id in running:
        a.wait(job_id, until={"RUNNING"}, timeout=120)
    b.start()
    # B's disk holds nothing of these: it reads A's logs from the object store.
    assert not (b.home / "logs" / str(finished)).exists()
    assert "tick 3" in follow(b, token, running[0], "tick 3", timeout=30)
    with b.client(token) as client:
        whole = client.get(f"/api/v1/jobs/{finished}/logs").text
        assert "hello from helper" in whole and whole.rstrip().endswith("done")
        download = client.get(f"/api/v1/jobs/{finished}/logs/download")
        assert download.status_code == 200 and download.text == whole
    assert follow(b, token, finished, "never", timeout=30) == whole  # ends with the job's log
    shared = httpx.get(share.replace(a.url, b.url) + "/log")
    assert shared.status_code == 200 and shared.text == whole

    a.kill()  # kill -9: its drivers die with it (its watchdog), the jobs run again on B
    for job_id in running:
        job = b.wait(job_id, timeout=180)
        assert job["state"] == "SUCCEEDED", job
        with b.client(token) as client:
            attempts = client.get(f"/api/v1/jobs/{job_id}/attempts").json()["items"]
        assert [x["state"] for x in attempts] == ["LOST", "SUCCEEDED"]
        assert attempts[-1]["host"] == attempts[0]["host"]  # one machine, two "hosts"
        assert attempts[-1]["server_id"] != attempts[0]["server_id"]
        with b.client(token) as client:
            # The lost attempt's log survives its host, up to its last copy.
            lost = client.get(f"/api/v1/jobs/{job_id}/logs", params={"attempt": 1}).text
            assert "hello from helper" in lost and "tick 0" in lost
    # A log no longer kept (here: its copies removed, its host gone) says so.
    s3 = boto3.client(
        "s3",
        endpoint_url=b.extra_env["AWS_ENDPOINT_URL"],
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name="us-east-1",
    )
    prefix = f"{tmp_path.name}/logs/{finished}/"
    for item in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", []):
        s3.delete_object(Bucket=BUCKET, Key=item["Key"])
    with b.client(token) as client:
        gone = client.get(f"/api/v1/jobs/{finished}/logs")
        assert gone.status_code == 200 and gone.text == ""
        assert gone.headers["X-Log-Gone"] == "true"
        assert client.get(f"/api/v1/jobs/{finished}/logs/download").status_code == 404
    assert httpx.get(share.replace(a.url, b.url) + "/log").headers["X-Log-Gone"] == "true"
