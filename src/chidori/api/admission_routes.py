"""Queues, capacity and admission limits."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from chidori.api.deps import CurrentActor
from chidori.api.schemas import error_responses
from chidori.domain.admission import Resources
from chidori.domain.limits import LimitDoc, LimitsDoc, QueueDoc
from chidori.domain.records import QueueStats
from chidori.domain.units import format_memory
from chidori.services.admission import AdmissionService, ScopeCapacity, WarmPoolStatus


class Amounts(BaseModel):
    jobs: int | None
    memory: str | None
    cores: int | None


class ScopeOut(BaseModel):
    limits: LimitDoc
    reserved: Amounts
    free: Amounts


class CapacityOut(ScopeOut):
    waiting: int
    clusters: dict[str, ScopeOut]


class QueueOut(QueueDoc):
    name: str
    depth: int
    running: int
    reserved: Amounts
    oldest_wait_seconds: float | None


class QueueList(BaseModel):
    items: list[QueueOut]


class ServerOut(BaseModel):
    id: str
    host: str
    pid: int
    version: str
    started_at: datetime
    heartbeat_at: datetime
    alive: bool


class ServerList(BaseModel):
    items: list[ServerOut]


def _amounts(held: Resources) -> Amounts:
    return Amounts(
        jobs=held.jobs,
        memory=format_memory(held.memory_mb) if held.memory_mb else "0m",
        cores=held.cores,
    )


def _scope(scope: ScopeCapacity) -> ScopeOut:
    jobs, memory, cores = scope.free
    limit = scope.limit
    return ScopeOut(
        limits=LimitDoc(
            max_running_jobs=limit.max_running_jobs,
            max_memory=format_memory(limit.max_memory_mb) if limit.max_memory_mb else None,
            max_cores=limit.max_cores,
        ),
        reserved=_amounts(scope.reserved),
        free=Amounts(
            jobs=jobs,
            memory=None if memory is None else (format_memory(memory) if memory else "0m"),
            cores=cores,
        ),
    )


def _queue(stats: QueueStats, now: datetime) -> QueueOut:
    oldest = stats.oldest_queued_at
    return QueueOut(
        **stats.config.model_dump(),
        name=stats.name,
        depth=stats.depth,
        running=stats.running.jobs,
        reserved=_amounts(stats.running),
        oldest_wait_seconds=(now - oldest).total_seconds() if oldest else None,
    )


class WarmDriverOut(BaseModel):
    id: str
    server_id: str
    state: str  # starting | idle | retiring
    memory: str
    cores: int
    pid: int | None
    created_at: datetime
    memory_in_use: str | None = None  # resident memory, for drivers of the answering server


class WarmPoolOut(BaseModel):
    cluster: str
    size: int
    configured_size: int
    driver_memory: str
    driver_cores: int
    conf: dict[str, str]
    drivers: list[WarmDriverOut]


class WarmPoolList(BaseModel):
    items: list[WarmPoolOut]


class WarmSize(BaseModel):
    size: int | None = Field(
        None, ge=0, le=64, description="Warm drivers per server; null: back to the config's."
    )


def _warm_pool(status: WarmPoolStatus, rss: Callable[[str], int]) -> WarmPoolOut:
    return WarmPoolOut(
        cluster=status.cluster,
        size=status.size,
        configured_size=status.configured_size,
        driver_memory=status.pool.driver_memory,
        driver_cores=status.pool.driver_cores,
        conf=dict(status.pool.conf),
        drivers=[
            WarmDriverOut(
                id=d.id,
                server_id=d.server_id,
                state=d.state,
                memory=format_memory(d.held.memory_mb),
                cores=d.held.cores,
                pid=d.pid,
                created_at=d.created_at,
                memory_in_use=format_memory(used // 2**20) if (used := rss(d.id)) else None,
            )
            for d in status.drivers
        ],
    )


SERVER_ALIVE_SECONDS = 30.0
QueueName = Path(pattern=r"^[A-Za-z0-9_.\-]{1,128}$")
ClusterName = Path(pattern=r"^[A-Za-z0-9_.\-]{1,128}$")  # one Path object per parameter


def build_admission_router(
    admission: AdmissionService, warm_rss: Callable[[str], int] = lambda _id: 0
) -> APIRouter:
    router = APIRouter(prefix="/api/v1", responses=error_responses(401, 403, 422, 503))

    @router.get("/warm-pool", response_model=WarmPoolList, tags=["admission"])
    def warm_pools(who: CurrentActor) -> WarmPoolList:
        """Every cluster's warm pool: size per server, shape, and each warm driver."""
        return WarmPoolList(items=[_warm_pool(p, warm_rss) for p in admission.warm_pools(who)])

    @router.put(
        "/admin/warm-pool/{cluster}",
        response_model=WarmPoolOut,
        tags=["admin"],
        responses=error_responses(400, 404, 413),
    )
    def put_warm_pool(body: WarmSize, who: CurrentActor, cluster: str = ClusterName) -> WarmPoolOut:
        """Set how many warm drivers each server keeps for a cluster (admins; 0 turns the
        pool off, null returns to the config's size). Applies at once."""
        return _warm_pool(admission.set_warm_size(who, cluster, body.size), warm_rss)

    @router.get("/capacity", response_model=CapacityOut, tags=["admission"])
    def capacity(who: CurrentActor) -> CapacityOut:
        """Limits, what admitted and running jobs reserve, what is free; per cluster too."""
        found = admission.capacity(who)
        total = _scope(found.total)
        return CapacityOut(
            **total.model_dump(),
            waiting=found.waiting,
            clusters={name: _scope(scope) for name, scope in found.clusters.items()},
        )

    @router.get("/servers", response_model=ServerList, tags=["admission"])
    def servers(who: CurrentActor) -> ServerList:
        """The server replicas sharing this database; `alive` = heartbeat seen lately."""
        now = datetime.now(UTC)
        return ServerList(
            items=[
                ServerOut(
                    id=s.id,
                    host=s.host,
                    pid=s.pid,
                    version=s.version,
                    started_at=s.started_at,
                    heartbeat_at=s.heartbeat_at,
                    alive=(now - s.heartbeat_at).total_seconds() < SERVER_ALIVE_SECONDS,
                )
                for s in admission.servers(who)
            ]
        )

    @router.get("/queues", response_model=QueueList, tags=["admission"])
    def queues(who: CurrentActor) -> QueueList:
        """Every queue: rank, weight, quota, jobs waiting and running, the longest wait."""
        now = datetime.now(UTC)
        return QueueList(items=[_queue(q, now) for q in admission.queues(who)])

    @router.put(
        "/admin/queues/{name}",
        response_model=QueueDoc,
        tags=["admin"],
        responses=error_responses(400, 413),
    )
    def put_queue(body: QueueDoc, who: CurrentActor, name: str = QueueName) -> QueueDoc:
        """Create or replace a queue (admins)."""
        return admission.put_queue(who, name, body)

    @router.get("/admin/limits", response_model=LimitsDoc, tags=["admin"])
    def get_limits(who: CurrentActor) -> LimitsDoc:
        return admission.limits(who)

    @router.put(
        "/admin/limits",
        response_model=LimitsDoc,
        tags=["admin"],
        responses=error_responses(400, 413),
    )
    def put_limits(body: LimitsDoc, who: CurrentActor) -> LimitsDoc:
        """Replace the admission limits (admins). They apply at once, on every replica."""
        return admission.set_limits(who, body)

    return router
