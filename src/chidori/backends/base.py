"""The backend interface.

A hosted backend does not run anything itself: it says how to start a job's driver (a command
that Chidori's driver host runs as a child process) and how to clean up after an attempt.
Backends are stateless; what they start is tagged with the job id and attempt number
(environment variables `CHIDORI_JOB_ID`, `CHIDORI_ATTEMPT`) so it can be found again.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from chidori.config import ClusterConfig
from chidori.domain.errors import BackendError
from chidori.domain.records import Job

Resolver = Callable[[str, str], str]
"""(reference, field name) -> local path or URL; raises InvalidRequest when not allowed."""


@dataclass(frozen=True)
class DriverCommand:
    """Everything needed to start one driver process."""

    argv: list[str]
    env: Mapping[str, str]
    cwd: Path


@dataclass(frozen=True)
class LaunchRequest:
    job: Job
    attempt: int
    work_dir: Path
    resolve: Resolver
    # The job's Python environment (chidori.host.environments): a folder of packages put in
    # front of the server's on the driver's and its Python workers' path; None without one.
    python_path: Path | None = None
    # The same environment packed, for executors on other hosts (`ships_environments`).
    python_archive: Path | None = None


class HostedBackend(ABC):
    """A Spark master whose drivers Chidori hosts (client mode)."""

    def __init__(self, cluster: ClusterConfig) -> None:
        self.cluster = cluster

    @abstractmethod
    def driver_command(self, request: LaunchRequest) -> DriverCommand:
        """The command that runs this attempt's driver. Raises InvalidRequest when the spec
        names files that cannot be used, BackendError when the backend itself is unusable."""

    def warm_conf(self) -> dict[str, str] | None:
        """The conf this cluster's warm drivers start with; None if it keeps none."""
        return None

    def ships_environments(self) -> bool:
        """Whether this cluster's executors may run on other hosts, so a job's Python
        environment goes to them packed (LaunchRequest.python_archive)."""
        return False

    def warm_command(self, control_dir: Path) -> DriverCommand:  # noqa: ARG002
        """The command of a warm driver (started before any job; waits in `control_dir`)."""
        raise BackendError(f"cluster {self.cluster.name!r} keeps no warm drivers")

    def warm_job(self, request: LaunchRequest) -> dict[str, object]:  # noqa: ARG002
        """What a warm driver needs to run this attempt's application. Raises InvalidRequest
        when the spec names files that cannot be used."""
        raise BackendError(f"cluster {self.cluster.name!r} keeps no warm drivers")

    def cleanup(self, job_id: int, attempt: int) -> None:  # noqa: B027
        """Remove what an attempt left outside its driver's processes (executor pods, remote
        resources), found by the job tag. Idempotent. Hosted local masters leave nothing."""
