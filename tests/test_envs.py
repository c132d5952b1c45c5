"""Per-job Python environments through a live server, with real uv against real PyPI
(only the small, pure-Python packages the jobs ask for are downloaded; docs/testing.md).

One server for the module, isolated (jobs run sandboxed as their own uids), jobs submitted by
a plain user. The uv cache lives in the server's home, so the module downloads each package
once.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from chidori.cli import main as cli_main
from chidori.cli.exit_codes import ExitCode
from chidori.cli.submit_flags import parse_submit
from tests.server import ChidoriServer
from tests.test_ui_login import sign_in

# Small, pure-Python, none of them installed in the server's Python.
PACKAGE = "tabulate"
OTHER_VERSION = "tabulate==0.9.0"

PROBE = """\
import os, sys
import pyspark
import {module}
print("version", {module}.__version__ if hasattr({module}, "__version__") else "?")
print("module file", {module}.__file__)
print("pyspark", pyspark.__version__, pyspark.__file__)
site = os.path.dirname(os.path.dirname({module}.__file__))
for target in (os.path.join(site, "planted.py"), {module}.__file__):
    try:
        with open(target, "a") as handle:
            handle.write("import os; os.system('echo owned')\\n")
        print("WROTE", target)
    except OSError as exc:
        print("write refused:", type(exc).__name__)
try:
    os.chmod(site, 0o777)
    print("CHMOD", site)
except OSError as exc:
    print("chmod refused:", type(exc).__name__)
"""


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("envs-server")


@pytest.fixture(scope="module")
def server(home: Path) -> Iterator[ChidoriServer]:
    with ChidoriServer(home) as running:
        yield running


@pytest.fixture(scope="module")
def user(server: ChidoriServer) -> str:
    """A plain user's token: jobs are hostile code from an ordinary user."""
    with server.client() as admin:
        made = admin.post("/api/v1/admin/users", json={"name": "envuser", "role": "user"})
        assert made.status_code == 201, made.text
        token: str = admin.post("/api/v1/tokens", json={"user": "envuser", "name": "t"}).json()[
            "token"
        ]
    return token


def upload(server: ChidoriServer, token: str, name: str, text: str) -> str:
    with server.client(token) as client:
        response = client.post("/api/v1/uploads", files={"file": (name, text.encode())})
    assert response.status_code == 201, response.text
    uri: str = response.json()["uri"]
    return uri


def submit(server: ChidoriServer, token: str, **spec: Any) -> dict[str, Any]:
    with server.client(token) as client:
        response = client.post("/api/v1/jobs", json=spec)
    assert response.status_code == 201, response.text
    job: dict[str, Any] = response.json()
    return job


def environment_of(server: ChidoriServer, job_id: int) -> dict[str, Any]:
    with server.client() as client:
        response = client.get(f"/api/v1/jobs/{job_id}/environment")
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def prepared_seconds(server: ChidoriServer, job_id: int) -> float:
    """From the submission to the environment's release (events' times)."""
    with server.client() as client:
        events = client.get(f"/api/v1/jobs/{job_id}/events").json()["items"]
    queued = next(e for e in events if e["state"] == "QUEUED")
    ready = next(e for e in events if e["type"] == "environment")
    return _seconds(ready["time"]) - _seconds(queued["time"])


def _seconds(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp).timestamp()


def test_the_server_lacks_the_test_package() -> None:
    assert importlib.util.find_spec(PACKAGE) is None  # otherwise the tests prove nothing


def test_a_job_importing_a_package_the_server_lacks_succeeds_and_cannot_write_its_env(
    server: ChidoriServer, user: str
) -> None:
    app = upload(server, user, "probe.py", PROBE.format(module=PACKAGE))
    first = submit(server, user, kind="python", application=app, requirements=[PACKAGE])
    assert first["state"] == "QUEUED"
    done = server.wait(first["id"], timeout=120)
    log = server.log(first["id"])
    assert done["state"] == "SUCCEEDED", (done, log)
    assert log.startswith("==> chidori: Python environment\n"), log
    assert "==> chidori: driver" in log and f"packages: {PACKAGE}==" in log
    # The package comes from the job's environment, pyspark from the server's Python.
    module_file = re.search(r"module file (\S+)", log)
    assert module_file and "/envs/" in module_file.group(1), log
    import pyspark

    assert f"pyspark {pyspark.__version__} {pyspark.__file__}" in log
    # A hostile job can neither add a file to its environment, nor change one, nor open it.
    assert "WROTE" not in log and "CHMOD" not in log, log
    assert log.count("write refused") == 2 and "chmod refused" in log
    environment = environment_of(server, first["id"])
    assert environment["state"] == "ready" and environment["packages"].keys() == {PACKAGE}
    assert "built in" in environment["log"]
    site = Path(module_file.group(1)).parent.parent
    assert not os.stat(site).st_mode & 0o222  # read-only for its owner too

    # The same requirements again: the environment is found, not built.
    second = submit(server, user, kind="python", application=app, requirements=[PACKAGE])
    assert server.wait(second["id"], timeout=60)["state"] == "SUCCEEDED"
    again = environment_of(server, second["id"])
    assert again["key"] == environment["key"] and "cache hit" in again["log"]
    hit = prepared_seconds(server, second["id"])
    print(f"cache hit: environment ready {hit:.3f} s after submission")
    assert hit < 1.0


def test_two_jobs_asking_at_once_for_a_new_environment_build_it_once(
    server: ChidoriServer, user: str
) -> None:
    app = upload(server, user, "version.py", "import tabulate\nprint(tabulate.__version__)\n")
    jobs: list[dict[str, Any]] = []

    def send() -> None:
        jobs.append(
            submit(server, user, kind="python", application=app, requirements=[OTHER_VERSION])
        )

    senders = [threading.Thread(target=send) for _ in range(3)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()
    for job in jobs:
        done = server.wait(job["id"], timeout=120)
        assert done["state"] == "SUCCEEDED", server.log(job["id"])
        assert "0.9.0" in server.log(job["id"])
    logs = [environment_of(server, job["id"])["log"] for job in jobs]
    assert len({environment_of(server, job["id"])["key"] for job in jobs}) == 1
    assert sum("built in" in log for log in logs) == 1, logs
    with server.client() as admin:
        listed = admin.get("/api/v1/environments").json()["items"]
    assert [e["packages"] for e in listed].count({"tabulate": "0.9.0"}) == 1


def test_an_unresolvable_requirement_fails_the_job_at_once_with_the_resolvers_message(
    server: ChidoriServer, user: str
) -> None:
    app = upload(server, user, "never.py", "print('never runs')\n")
    started = time.monotonic()
    job = submit(
        server, user, kind="python", application=app, requirements=["chidori-no-such-pkg-x9"]
    )
    done = server.wait(job["id"], timeout=60)
    elapsed = time.monotonic() - started
    assert done["state"] == "FAILED" and done["attempts"] == 0, done  # it never took a slot
    assert "could not resolve the job's requirements" in done["reason"]
    assert "chidori-no-such-pkg-x9" in done["reason"] and "not found" in done["reason"]
    assert elapsed < 15, elapsed


def test_pyspark_in_requirements_stays_the_servers(server: ChidoriServer, user: str) -> None:
    app = upload(
        server, user, "which.py", "import pyspark\nprint('pyspark at', pyspark.__file__)\n"
    )
    job = submit(server, user, kind="python", application=app, requirements=["pyspark", PACKAGE])
    done = server.wait(job["id"], timeout=60)
    assert done["state"] == "SUCCEEDED", server.log(job["id"])
    import pyspark

    assert f"pyspark at {pyspark.__file__}" in server.log(job["id"])
    assert "pyspark" not in environment_of(server, job["id"])["packages"]
    refused = submit(server, user, kind="python", application=app, requirements=["pyspark<4"])
    failed = server.wait(refused["id"], timeout=30)
    assert failed["state"] == "FAILED" and "a job cannot replace it" in failed["reason"]


@pytest.mark.parametrize(
    ("requirement", "why"),
    [
        ("--index-url https://example.org/simple", "pip options are not allowed"),
        ("-r other.txt", "pip options are not allowed"),
        ("evil @ https://example.org/evil.whl", "direct URL references are not allowed"),
        ("tabulate >>= 1", "is not a PEP 508 requirement"),
    ],
)
def test_requirements_that_point_elsewhere_or_are_not_pep508_get_422(
    server: ChidoriServer, user: str, requirement: str, why: str
) -> None:
    with server.client(user) as client:
        response = client.post(
            "/api/v1/jobs",
            json={"kind": "python", "application": "x.py", "requirements": ["ok", requirement]},
        )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert any("requirements" in str(field) and why in str(field) for field in error["fields"]), (
        error
    )


def test_submit_takes_pip_and_a_requirements_file(tmp_path: Path) -> None:
    app = tmp_path / "job.py"
    app.write_text("print(1)\n")
    (tmp_path / "base.txt").write_text("rich>=13  # for tables\n")
    (tmp_path / "reqs.txt").write_text("# ours\n-r base.txt\ntabulate \\\n  >=0.9\n")
    plan = parse_submit(
        ["--kind", "python", "--requirements", str(tmp_path / "reqs.txt"), "--pip", "six", str(app)]
    )
    assert plan.spec["requirements"] == ["rich>=13", "tabulate >=0.9", "six"]
    (tmp_path / "bad.txt").write_text("tabulate\n--extra-index-url https://example.org\n")
    with pytest.raises(Exception, match="--extra-index-url is not allowed"):
        parse_submit(["--requirements", str(tmp_path / "bad.txt"), str(app)])


def test_pruning_never_removes_an_environment_a_running_job_uses(
    server: ChidoriServer, user: str
) -> None:
    unused_app = upload(server, user, "quick.py", "print('done')\n")
    quick = submit(
        server, user, kind="python", application=unused_app, requirements=[OTHER_VERSION]
    )
    assert server.wait(quick["id"], timeout=120)["state"] == "SUCCEEDED"
    unused = environment_of(server, quick["id"])["key"]
    sleeper = upload(
        server, user, "sleep.py", "import time, tabulate\nprint('up', flush=True)\ntime.sleep(60)\n"
    )
    running = submit(server, user, kind="python", application=sleeper, requirements=[PACKAGE])
    server.wait(running["id"], {"RUNNING"}, timeout=60)
    in_use = environment_of(server, running["id"])["key"]
    envs = server.home / "envs"
    with server.client() as admin:
        listed = {e["key"]: e["uses"] for e in admin.get("/api/v1/environments").json()["items"]}
        assert listed[in_use] == 1 and listed[unused] == 0
        removed = admin.post("/api/v1/admin/environments/prune", json={"budget": "0"}).json()
        assert unused in removed["removed"] and in_use not in removed["removed"]
        assert (envs / in_use / "site").is_dir() and not (envs / unused).exists()
        assert admin.delete(f"/api/v1/jobs/{running['id']}").status_code == 200
        assert server.wait(running["id"], timeout=30)["state"] == "CANCELLED"
        again = admin.post("/api/v1/admin/environments/prune", json={"budget": "0"}).json()
        assert in_use in again["removed"] and not (envs / in_use).exists()
        refused = admin.post("/api/v1/admin/environments/prune", json={"budget": "lots"})
        assert refused.status_code == 422 and "budget" in refused.text
    with server.client(user) as plain:
        assert plain.get("/api/v1/environments").status_code == 403


def test_a_livy_batch_names_requirements_in_spark_conf(server: ChidoriServer, user: str) -> None:
    conf = {"spark.chidori.requirements": json.dumps([PACKAGE, "six>=1"])}
    created = httpx.post(
        f"{server.url}/batches",
        json={"file": "examples/pi.py", "conf": conf},
        auth=("livy", user),
        timeout=30,
    )
    assert created.status_code == 201, created.text
    with server.client() as admin:
        jobs = admin.get("/api/v1/jobs", params={"limit": 1}).json()["items"]
        job = admin.get(f"/api/v1/jobs/{jobs[0]['id']}").json()
        assert job["spec"]["requirements"] == [PACKAGE, "six>=1"], job["spec"]
        assert "spark.chidori.requirements" not in job["spec"]["conf"]
        admin.delete(f"/api/v1/jobs/{job['id']}")
    bad = httpx.post(
        f"{server.url}/batches",
        json={"file": "examples/pi.py", "conf": {"spark.chidori.requirements": "[1]"}},
        auth=("livy", user),
        timeout=30,
    )
    assert bad.status_code == 400 and "a JSON array of strings" in bad.text


def test_what_changed_since_the_last_good_run_lists_package_versions(
    server: ChidoriServer, user: str
) -> None:
    app = upload(server, user, "table.py", "import tabulate\nprint(tabulate.__version__)\n")
    runs = []
    for requirement in (OTHER_VERSION, PACKAGE):
        job = submit(
            server,
            user,
            kind="python",
            application=app,
            requirements=[requirement],
            schema="ml",
            table="versions",
        )
        assert server.wait(job["id"], timeout=120)["state"] == "SUCCEEDED"
        runs.append(job)
    with server.client(user) as client:
        changes = client.get(f"/api/v1/jobs/{runs[1]['id']}/changes").json()
    newest = environment_of(server, runs[1]["id"])["packages"]["tabulate"]
    assert changes["baseline"]["id"] == runs[0]["id"]
    assert changes["packages"] == [f"tabulate 0.9.0 → {newest}"], changes
    with sign_in(server, user) as browser:
        page = browser.get(f"/ui/jobs/{runs[1]['id']}")
    assert page.status_code == 200
    assert 'id="job-packages"' in page.text and f"<td>tabulate</td><td>{newest}</td>" in page.text


def test_the_cli_lists_prunes_and_shows_environments(
    server: ChidoriServer, user: str, capsys: pytest.CaptureFixture[str]
) -> None:
    app = upload(server, user, "cli.py", "import tabulate\n")
    job = submit(server, user, kind="python", application=app, requirements=[PACKAGE])
    assert server.wait(job["id"], timeout=60)["state"] == "SUCCEEDED"
    connection = ["--server", server.url, "--token", server.token]
    assert cli_main(["envs", "show", str(job["id"]), *connection]) == 0
    shown = capsys.readouterr().out
    assert f"{PACKAGE}==" in shown and "==> chidori" not in shown and "resolved" in shown
    assert cli_main(["envs", "list", *connection, "--json"]) == 0
    keys = {e["key"] for e in json.loads(capsys.readouterr().out)["items"]}
    assert environment_of(server, job["id"])["key"] in keys
    assert cli_main(["envs", "prune", "--budget", "0", *connection]) == 0
    assert "removed" in capsys.readouterr().out
    assert cli_main(["envs", "list", "--server", server.url, "--token", user]) == ExitCode.AUTH


def test_a_base_environment_is_kept_and_jobs_start_from_it(
    server: ChidoriServer, user: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with server.client() as admin:
        made = admin.post(
            "/api/v1/admin/environments/base",
            json={"name": "tables", "requirements": [OTHER_VERSION]},
        )
        assert made.status_code == 201, made.text
        base = made.json()
        assert base["packages"] == {"tabulate": "0.9.0"}
        again = admin.post(
            "/api/v1/admin/environments/base", json={"name": "tables", "requirements": ["six"]}
        )
        assert again.status_code == 409
        bad = admin.post(
            "/api/v1/admin/environments/base",
            json={"name": "nothing", "requirements": ["chidori-no-such-pkg-x9"]},
        )
        assert bad.status_code == 422 and "not found" in bad.text
    with server.client(user) as client:
        listed = client.get("/api/v1/environments/base").json()["items"]
        assert [b["name"] for b in listed] == ["tables"]
        refused = client.post(
            "/api/v1/admin/environments/base", json={"name": "mine", "requirements": ["six"]}
        )
        assert refused.status_code == 403
    app = upload(
        server, user, "base.py", "import tabulate\nprint('tabulate', tabulate.__version__)\n"
    )
    plain = submit(server, user, kind="python", application=app, environment="tables")
    more = submit(
        server, user, kind="python", application=app, environment="tables", requirements=["six"]
    )
    missing = submit(server, user, kind="python", application=app, environment="absent")
    assert server.wait(plain["id"], timeout=60)["state"] == "SUCCEEDED"
    assert "tabulate 0.9.0" in server.log(plain["id"])
    assert environment_of(server, plain["id"])["key"] == base["key"]  # exactly the base's
    assert server.wait(more["id"], timeout=120)["state"] == "SUCCEEDED"
    assert environment_of(server, more["id"])["packages"].keys() == {"tabulate", "six"}
    assert environment_of(server, more["id"])["packages"]["tabulate"] == "0.9.0"
    failed = server.wait(missing["id"], timeout=30)
    assert failed["state"] == "FAILED" and "no base environment 'absent'" in failed["reason"]
    with server.client() as admin:
        pruned = admin.post("/api/v1/admin/environments/prune", json={"budget": "0"}).json()
        assert base["key"] not in pruned["removed"]  # a base is never pruned
        assert (server.home / "envs" / base["key"]).is_dir()
        connection = ["--server", server.url, "--token", server.token]
        assert cli_main(["envs", "base", "list", *connection]) == 0
        assert "tables" in capsys.readouterr().out
        assert cli_main(["envs", "base", "delete", "tables", *connection]) == 0
        assert admin.delete("/api/v1/admin/environments/base/tables").status_code == 404
        pruned = admin.post("/api/v1/admin/environments/prune", json={"budget": "0"}).json()
        assert base["key"] in pruned["removed"]
