"""The environment parts of one replica, built together from the settings (by the
composition root, `chidori.server`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from chidori.config.environments import EnvironmentsConfig
from chidori.host.environments.bases import EnvironmentBases
from chidori.host.environments.builder import EnvironmentBuilder
from chidori.host.environments.jobs import JobEnvironments
from chidori.host.environments.preparer import EnvironmentPreparer
from chidori.host.environments.pruning import EnvironmentPruner
from chidori.store.database import Database
from chidori.store.environments import EnvironmentRepository


@dataclass(frozen=True)
class EnvironmentParts:
    config: EnvironmentsConfig
    repo: EnvironmentRepository
    builder: EnvironmentBuilder
    pruner: EnvironmentPruner
    preparer: EnvironmentPreparer
    jobs: JobEnvironments
    bases: EnvironmentBases

    @classmethod
    def build(
        cls, config: EnvironmentsConfig, db: Database, environ: Mapping[str, str], server_id: str
    ) -> EnvironmentParts:
        repo = EnvironmentRepository(db)
        builder = EnvironmentBuilder(config, environ)
        # Now, not at start: the sandbox exposes only folders that exist when it is set up.
        builder.prepare_directory()
        pruner = EnvironmentPruner(repo, builder, config.budget_bytes)
        preparer = EnvironmentPreparer(repo, builder, pruner, server_id)
        bases = EnvironmentBases(repo, builder, server_id)
        return cls(config, repo, builder, pruner, preparer, JobEnvironments(repo, builder), bases)
