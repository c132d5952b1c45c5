"""Keeping the environments directory within its budget: least recently used first, and
never an environment an unfinished job names (the store counts them)."""

from __future__ import annotations

import logging
import os
import time

from chidori.host.environments.builder import EnvironmentBuilder
from chidori.store.environments import EnvironmentRepository

log = logging.getLogger(__name__)
# A folder with no row may be a build whose row is being written: left alone this long.
_ORPHAN_AGE_SECONDS = 600.0


class EnvironmentPruner:
    def __init__(
        self, repo: EnvironmentRepository, builder: EnvironmentBuilder, budget_bytes: int | None
    ) -> None:
        self._repo = repo
        self._builder = builder
        self.budget_bytes = budget_bytes

    def prune(self, budget_bytes: int | None = None) -> list[str]:
        """Remove unused environments, least recently used first, until the recorded total
        is within `budget_bytes` (default: the configured budget; None: no limit). Each is
        checked unused again under its build lock, in the transaction that deletes its row.
        Returns the keys removed."""
        budget = self.budget_bytes if budget_bytes is None else budget_bytes
        if budget is None:
            return []
        environments = self._repo.environments()
        total = sum(e.size_bytes for e in environments)
        removed: list[str] = []
        for environment in environments:
            if total <= budget:
                break
            if environment.uses:
                continue
            with self._builder.locked(environment.key):
                if self._repo.forget_unused(environment.key):
                    self._builder.remove(environment.key)
                    total -= environment.size_bytes
                    removed.append(environment.key)
        removed += self._orphans({e.key for e in environments})
        if removed:
            log.info("environments pruned: %s", ", ".join(k[:12] for k in removed))
        return removed

    def _orphans(self, known: set[str]) -> list[str]:
        """Folders no row names (their row was pruned by a replica on another disk), old
        enough not to be a build being recorded."""
        gone = []
        for key in self._builder.present() - known:
            path = self._builder.path_of(key)
            try:
                age = time.time() - os.stat(path).st_mtime
            except OSError:
                continue
            if age > _ORPHAN_AGE_SECONDS:
                with self._builder.locked(key):
                    self._builder.remove(key)
                gone.append(key)
        return gone
