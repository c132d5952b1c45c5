"""Environments in the store (SQLite and PostgreSQL): held jobs, claims between replicas,
release and failure as compare-and-sets, use counts; and two replicas on one PostgreSQL
database and one shared environments folder building a new environment once (real uv, PyPI:
`six`, one small pure-Python package)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from chidori.config.environments import EnvironmentsConfig
from chidori.domain.environments import PREPARING_REASON, Environment, EnvState
from chidori.domain.spec import JobSpec
from chidori.domain.states import JobState
from chidori.host.environments.parts import EnvironmentParts
from chidori.store import Database, Repositories, open_database
from chidori.store.environments import EnvironmentRepository


def held_job(repos: Repositories, requirements: list[str]) -> int:
    spec = JobSpec(application="a.py", kind="python", requirements=requirements)
    job, _ = repos.jobs.create_job(spec, "alice")
    return job.id


def an_environment(repo: EnvironmentRepository, key: str, size: int = 1000) -> Environment:
    now = repo.now()
    return Environment(key, "3.11", "linux-x86_64", {"six": "1.16.0"}, size, 0.1, "a", now, now)


def test_a_held_job_is_claimed_once_then_released_or_failed(store: Database) -> None:
    repos = Repositories.of(store)
    repo = EnvironmentRepository(store)
    first, second, plain = (
        held_job(repos, ["six"]),
        held_job(repos, ["nope"]),
        repos.jobs.create_job(JobSpec(application="a.py", kind="python"), "alice")[0].id,
    )
    assert [held[0] for held in repo.held_jobs()] == [first, second]  # not `plain`
    assert repos.jobs.get_job(first).state is JobState.QUEUED
    assert repo.claim(first, "server-a") and not repo.claim(first, "server-b")
    assert repo.claim(second, "server-a")
    assert repo.held_jobs() == []  # both claimed, neither stale
    # Only the claimant may release; the release lets admission see the job.
    key = "k" * 64
    assert not repo.release(first, "server-b", an_environment(repo, key), "six==1.16.0\n", "", "x")
    assert repo.release(first, "server-a", an_environment(repo, key), "six==1.16.0\n", "log", "x")
    found = repo.for_job(first)
    assert (
        found is not None and found.state is EnvState.READY and found.packages == {"six": "1.16.0"}
    )
    assert not repo.release(first, "server-a", an_environment(repo, key), "", "", "x")  # once
    # A failure ends the job before it took any slot, with the reason.
    assert repo.fail(second, "server-a", "could not resolve: nope", "uv said no")
    failed = repos.jobs.get_job(second)
    assert failed.state is JobState.FAILED and failed.attempts == 0
    assert failed.reason == "could not resolve: nope"
    events = [e.type for e in repos.jobs.list_events(first)]
    assert "environment" in events
    # The released job (QUEUED) uses its environment: it cannot be forgotten yet.
    assert [(e.key, e.uses) for e in repo.environments()] == [(key, 1)]
    assert not repo.forget_unused(key)
    assert repos.jobs.request_cancel(first, "alice").state is JobState.CANCELLED
    assert [(e.key, e.uses) for e in repo.environments()] == [(key, 0)]
    assert repo.forget_unused(key) and repo.environments() == []
    assert repo.for_job(plain) is None


def test_a_stale_claim_is_taken_over_and_claims_of_a_gone_server_dropped(store: Database) -> None:
    repos = Repositories.of(store)
    job_id = held_job(repos, ["six"])
    eager = EnvironmentRepository(store, stale_after=timedelta(seconds=0))
    assert eager.claim(job_id, "server-a")
    assert eager.claim(job_id, "server-b")  # a's claim is stale at once for this repository
    patient = EnvironmentRepository(store)
    assert not patient.claim(job_id, "server-c")
    assert patient.drop_claims(["server-a"]) == 0 and patient.drop_claims(["server-b"]) == 1
    assert [held[0] for held in patient.held_jobs()] == [job_id]
    job = repos.jobs.get_job(job_id)
    assert job.state is JobState.QUEUED
    with store.reading() as session:
        from chidori.store.models import JobRow

        row = session.get(JobRow, job_id)
        assert row is not None and row.wait_reason == PREPARING_REASON


@pytest.fixture
def postgres_db(postgres_schema_url: str) -> Iterator[Database]:
    db = open_database(postgres_schema_url)
    db.migrate()
    yield db
    db.dispose()


def test_two_replicas_sharing_a_folder_build_a_new_environment_once(
    postgres_db: Database, tmp_path: Path
) -> None:
    config = EnvironmentsConfig(directory=tmp_path / "envs", uv_cache_dir=tmp_path / "uv-cache")
    replicas = [
        EnvironmentParts.build(config, postgres_db, os.environ, f"replica-{n}") for n in (1, 2)
    ]
    repos = Repositories.of(postgres_db)
    # Three jobs each replica claims, all asking at once for one new environment.
    jobs = [held_job(repos, ["six==1.16.0"]) for _ in range(3)]
    assert replicas[0].preparer.step() == 3
    jobs += [held_job(repos, ["six==1.16.0"]) for _ in range(3)]
    assert replicas[1].preparer.step() == 3
    for replica in replicas:
        replica.preparer.close(wait=True)
    prepared = EnvironmentRepository(postgres_db).for_jobs(jobs)
    assert all(p.state is EnvState.READY for p in prepared.values()) and len(prepared) == 6
    assert len({p.env_key for p in prepared.values()}) == 1
    logs = [p.log or "" for p in prepared.values()]
    assert sum("built in" in log for log in logs) == 1, logs
    assert {p.server_id for p in prepared.values()} == {"replica-1", "replica-2"}
    built = [e for e in replicas[0].builder.present()]
    assert len(built) == 1
    environments = EnvironmentRepository(postgres_db).environments()
    assert len(environments) == 1 and environments[0].uses == 6


def local_index(root: Path) -> str:
    """A PEP 503 index on disk holding one hand-made pure-Python wheel, `chidori-local-pkg`."""
    import base64
    import hashlib
    import zipfile

    name, version = "chidori_local_pkg", "1.0"
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": "VALUE = 'from the admin index'\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: chidori-local-pkg\nVersion: {version}\n",
        f"{dist}/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    record.append(f"{dist}/RECORD,,")
    files[f"{dist}/RECORD"] = "\n".join(record) + "\n"
    project = root / "simple" / "chidori-local-pkg"
    project.mkdir(parents=True)
    wheel = project / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zipped:
        for path, text in files.items():
            zipped.writestr(path, text)
    (project / "index.html").write_text(f'<a href="{wheel.name}">{wheel.name}</a>\n')
    return (root / "simple").as_uri()


def test_packages_come_only_from_the_index_the_admin_configured(tmp_path: Path) -> None:
    from chidori.host.environments.builder import EnvironmentBuilder, ResolutionFailed

    config = EnvironmentsConfig(
        directory=tmp_path / "envs",
        uv_cache_dir=tmp_path / "uv-cache",
        index_url=local_index(tmp_path / "index"),
    )
    builder = EnvironmentBuilder(config, os.environ)
    builder.prepare_directory()
    built = builder.ensure(builder.resolve(["chidori-local-pkg"]).lock)
    assert (built.site / "chidori_local_pkg" / "__init__.py").read_text().startswith("VALUE")
    # On PyPI, but not in the admin's index: not found (PyPI is never asked).
    with pytest.raises(ResolutionFailed, match="tabulate"):
        builder.resolve(["tabulate"])
