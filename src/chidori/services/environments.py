"""Python environments as users and admins see them: a job's own (its resolved packages and
build log), the built environments with their use counts (admins), and pruning them."""

from __future__ import annotations

from collections.abc import Callable

from chidori.domain.environments import BaseEnvironment, Environment, JobEnvironment
from chidori.domain.errors import NotFound
from chidori.domain.identity import Role
from chidori.services.identity import Actor
from chidori.services.jobs import JobService
from chidori.store.environments import EnvironmentRepository

Prune = Callable[[int | None], list[str]]
"""(budget in bytes, None: the configured one) -> keys of the environments removed."""
CreateBase = Callable[[str, list[str], str], BaseEnvironment]
"""(name, requirements, created by) -> the base environment, built; raises InvalidRequest
with the resolver's message, Conflict for a name taken."""


class EnvironmentService:
    def __init__(
        self, jobs: JobService, repo: EnvironmentRepository, prune: Prune, create_base: CreateBase
    ) -> None:
        """`prune`: what removes unused environments over a budget, on this replica;
        `create_base`: what resolves and builds a base environment."""
        self._jobs = jobs
        self._repo = repo
        self._prune = prune
        self._create_base = create_base

    def of_job(self, actor: Actor, job_id: int) -> JobEnvironment:
        """The job's environment (whoever may see the job). NotFound when it has none."""
        self._jobs.get(actor, job_id)
        found = self._repo.for_job(job_id)
        if found is None:
            raise NotFound(f"job {job_id} has no Python environment (it names no requirements)")
        return found

    def packages_of(self, job_id: int) -> dict[str, str] | None:
        """A job's resolved packages (no access check: for views that checked already)."""
        found = self._repo.for_job(job_id)
        return None if found is None or found.lock is None else found.packages

    def built(self, actor: Actor) -> list[Environment]:
        """Every built environment, least recently used first (admins only)."""
        actor.principal.require(Role.ADMIN)
        return self._repo.environments()

    def prune(self, actor: Actor, budget_bytes: int | None) -> list[str]:
        """Remove unused environments until the total is within `budget_bytes` (admins)."""
        actor.principal.require(Role.ADMIN)
        return self._prune(budget_bytes)

    def bases(self, actor: Actor) -> list[BaseEnvironment]:
        """The base environments jobs may name (users and admins)."""
        actor.principal.require(Role.ADMIN, Role.USER, Role.VIEWER)
        return self._repo.bases()

    def create_base(self, actor: Actor, name: str, requirements: list[str]) -> BaseEnvironment:
        """Resolve, build and keep a base environment (admins)."""
        actor.principal.require(Role.ADMIN)
        return self._create_base(name, requirements, actor.name)

    def delete_base(self, actor: Actor, name: str) -> None:
        """Forget a base environment; its folder goes once no job uses it (admins)."""
        actor.principal.require(Role.ADMIN)
        if not self._repo.delete_base(name):
            raise NotFound(f"no base environment {name!r}")
