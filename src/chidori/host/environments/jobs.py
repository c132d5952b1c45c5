"""A launched driver's environment: the one its job was prepared with, built on this host
if it is not here (another replica prepared it on its own disk, or it was pruned while the
job waited), and its log written to the attempt's log as the first phase."""

from __future__ import annotations

import time
from pathlib import Path

from chidori.domain.environments import EnvState
from chidori.host.environments.builder import EnvironmentBuilder, ResolutionFailed
from chidori.store.environments import EnvironmentRepository


class EnvironmentNotReady(RuntimeError):
    """The job has no environment to run with here: its attempt fails to start (never an
    answer to a caller, so no protocol's error)."""


def phase_header(title: str) -> str:
    return f"==> chidori: {title}\n"


class JobEnvironments:
    def __init__(self, repo: EnvironmentRepository, builder: EnvironmentBuilder) -> None:
        self._repo = repo
        self._builder = builder

    def site_for(self, job_id: int, log_path: Path) -> Path:
        """The folder to put on the driver's PYTHONPATH. Appends the environment phase to
        `log_path`. Raises EnvironmentNotReady when there is none to use."""
        record = self._repo.for_job(job_id)
        if record is None or record.state is not EnvState.READY or record.lock is None:
            raise EnvironmentNotReady(f"job {job_id} has no ready Python environment")
        started = time.monotonic()
        try:
            built = self._builder.ensure(record.lock)
        except ResolutionFailed as exc:
            raise EnvironmentNotReady(f"its Python environment could not be built: {exc}") from exc
        here = (
            f"present on this host ({time.monotonic() - started:.3f} s)"
            if built.hit
            else f"built on this host in {built.seconds:.2f} s"
        )
        packages = " ".join(f"{n}=={v}" for n, v in sorted(record.packages.items())) or "none"
        text = (
            phase_header("Python environment")
            + (record.log or "").rstrip("\n")
            + f"\nenvironment {built.key[:12]}: {here}\npackages: {packages}\n"
            + phase_header("driver")
        )
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "a", encoding="utf-8") as log_file:
            log_file.write(text)
        return built.site

    def archive_of(self, site: Path) -> Path:
        """The environment whose folder is `site`, packed (built once, kept beside it)."""
        return self._builder.packed(site.parent.name)
