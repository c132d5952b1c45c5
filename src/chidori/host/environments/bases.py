"""Base environments: named, pre-built sets an admin creates ("pre-installed" packages). A
job naming one (`environment: NAME`) starts from its lock; one that adds nothing runs in
exactly its environment (a hit). They are never pruned while they exist."""

from __future__ import annotations

from chidori.domain.environments import BaseEnvironment, Environment, parse_lock
from chidori.domain.errors import InvalidRequest
from chidori.host.environments.builder import EnvironmentBuilder, ResolutionFailed
from chidori.store.environments import EnvironmentRepository


class EnvironmentBases:
    def __init__(
        self, repo: EnvironmentRepository, builder: EnvironmentBuilder, server_id: str
    ) -> None:
        self._repo = repo
        self._builder = builder
        self._server_id = server_id

    def create(self, name: str, requirements: list[str], created_by: str) -> BaseEnvironment:
        """Resolve and build it now, then record it. Raises InvalidRequest with the
        resolver's message, Conflict when the name is taken."""
        try:
            resolution = self._builder.resolve(requirements)
            built = self._builder.ensure(resolution.lock)
        except ResolutionFailed as exc:
            raise InvalidRequest.for_field("requirements", exc.message) from exc
        now = self._repo.now()
        size = built.size_bytes or self._builder.size_of(built.key)
        environment = Environment(
            built.key,
            self._builder.python_version,
            self._builder.platform,
            parse_lock(resolution.lock),
            size,
            built.seconds,
            self._server_id,
            now,
            now,
        )
        base = BaseEnvironment(name, requirements, resolution.lock, built.key, created_by, now)
        self._repo.save_base(base, environment)
        return base
