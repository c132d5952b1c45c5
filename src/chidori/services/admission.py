"""Queues, limits and capacity: what admins set and what everyone may look at."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from chidori.config import ClusterConfig
from chidori.domain.admission import Limit, Resources, never_fits
from chidori.domain.errors import FieldError, InvalidRequest, NotFound
from chidori.domain.identity import Role
from chidori.domain.lifecycle import spec_demand
from chidori.domain.limits import LimitsDoc, QueueDoc
from chidori.domain.records import QueueStats, Server
from chidori.domain.spec import JobSpec
from chidori.domain.warm import WarmPoolConfig
from chidori.domain.warm_planning import WarmDriver
from chidori.services.identity import Actor, IdentityService
from chidori.services.refreshed import Refreshed
from chidori.store.admission import AdmissionStore

_CACHE_SECONDS = 1.0


@dataclass(frozen=True)
class ScopeCapacity:
    limit: Limit
    reserved: Resources

    @property
    def free(self) -> tuple[int | None, int | None, int | None]:
        limit, held = self.limit, self.reserved
        return (
            None if limit.max_running_jobs is None else max(0, limit.max_running_jobs - held.jobs),
            None if limit.max_memory_mb is None else max(0, limit.max_memory_mb - held.memory_mb),
            None if limit.max_cores is None else max(0, limit.max_cores - held.cores),
        )


@dataclass(frozen=True)
class Capacity:
    total: ScopeCapacity
    clusters: dict[str, ScopeCapacity]
    waiting: int


@dataclass(frozen=True)
class WarmPoolStatus:
    cluster: str
    size: int  # what servers keep now (each, for this cluster)
    configured_size: int  # from the config file / CHIDORI_WARM_POOL
    pool: WarmPoolConfig
    drivers: list[WarmDriver]


class AdmissionService:
    def __init__(
        self,
        store: AdmissionStore,
        identity: IdentityService,
        clusters: Mapping[str, ClusterConfig] | None = None,
    ) -> None:
        self._store = store
        self._identity = identity
        self._clusters = dict(clusters or {})
        # Submissions read these on every request; a second of staleness on other replicas
        # only delays a refusal, admission itself always reads the store.
        self._cache = Refreshed(self._load_settings, _CACHE_SECONDS)

    def _settings(self) -> tuple[LimitsDoc, dict[str, QueueDoc]]:
        return self._cache.get()

    def settings_fresh(self) -> bool:
        """Whether `check_submission` runs now without reading the store."""
        return self._cache.fresh()

    def _load_settings(self) -> tuple[LimitsDoc, dict[str, QueueDoc]]:
        return self._store.get_limits(), self._store.queues()

    def _forget(self) -> None:
        self._cache.forget()

    def check_submission(self, spec: JobSpec) -> None:
        """Refuse a job for an unknown queue, or one bigger than a whole limit (it would wait
        forever)."""
        limits, queues = self._settings()
        queue = queues.get(spec.queue)
        if queue is None:
            known = ", ".join(sorted(queues))
            raise InvalidRequest.for_field("queue", f"unknown queue {spec.queue!r}; known: {known}")
        cluster = self._clusters.get(spec.cluster)
        # A remote cluster's service runs the driver: no driver memory here.
        demand = spec_demand(spec, hosted_driver=cluster is None or cluster.remote is None)
        reason = never_fits(demand, spec.cluster, queue.config(spec.queue), limits.limits())
        if reason is not None:
            message = (
                f"the job needs {demand.memory_mb}m and {demand.cores} cores in all (driver + "
                f"{spec.executor_instances} executors), more than can ever be admitted: {reason}"
            )
            raise InvalidRequest(message, [FieldError("demand", message)])

    def capacity(self, actor: Actor) -> Capacity:
        del actor  # every signed-in caller may see capacity
        usage, waiting = self._store.usage()
        limits = self._store.get_limits()
        names = set(limits.clusters) | set(usage.by_cluster)
        return Capacity(
            ScopeCapacity(limits.limit(), usage.total),
            {
                name: ScopeCapacity(
                    limits.clusters[name].limit() if name in limits.clusters else Limit(),
                    usage.by_cluster.get(name, Resources()),
                )
                for name in sorted(names)
            },
            waiting,
        )

    def queues(self, actor: Actor) -> list[QueueStats]:
        del actor
        return self._store.queue_stats()

    def servers(self, actor: Actor) -> list[Server]:
        del actor
        return self._store.servers()

    def limits(self, actor: Actor) -> LimitsDoc:
        del actor
        return self._store.get_limits()

    def set_limits(self, actor: Actor, limits: LimitsDoc) -> LimitsDoc:
        actor.principal.require(Role.ADMIN)
        saved = self._store.put_limits(limits, actor.name)
        self._forget()
        self._identity.record(actor, "limits.update", "limits", limits.model_dump(mode="json"))
        return saved

    def warm_pools(self, actor: Actor) -> list[WarmPoolStatus]:
        """Every cluster's warm pool: its size and the warm drivers of every server."""
        del actor
        sizes = self._store.warm_sizes()
        drivers = self._store.warm_drivers()
        return [
            WarmPoolStatus(
                name,
                sizes.get(name, cluster.warm_pool.size),
                cluster.warm_pool.size,
                cluster.warm_pool,
                [d for d in drivers if d.cluster == name],
            )
            for name, cluster in sorted(self._clusters.items())
        ]

    def set_warm_size(self, actor: Actor, cluster: str, size: int | None) -> WarmPoolStatus:
        """Change how many warm drivers each server keeps for `cluster` (None: back to the
        config's). Applies at once: extra idle drivers are stopped, missing ones started."""
        actor.principal.require(Role.ADMIN)
        if cluster not in self._clusters:
            raise NotFound(f"no cluster named {cluster!r}")
        self._store.put_warm_size(cluster, size, actor.name)
        self._identity.record(actor, "warm_pool.update", cluster, {"size": size})
        return next(p for p in self.warm_pools(actor) if p.cluster == cluster)

    def put_queue(self, actor: Actor, name: str, doc: QueueDoc) -> QueueDoc:
        actor.principal.require(Role.ADMIN)
        saved = self._store.put_queue(name, doc)
        self._forget()
        self._identity.record(actor, "queue.update", name, doc.model_dump(mode="json"))
        return saved
