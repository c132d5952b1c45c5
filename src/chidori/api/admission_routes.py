"""Queues, capacity and admission limits."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Path
from pydantic import BaseModel

from chidori.admission import Resources
from chidori.api.deps import CurrentActor
from chidori.api.schemas import error_responses
from chidori.limits import LimitDoc, LimitsDoc, QueueDoc
from chidori.services.admission import AdmissionService, ScopeCapacity
from chidori.store.admission import QueueStats
from chidori.units import format_memory


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


SERVER_ALIVE_SECONDS = 30.0
QueueName = Path(pattern=r"^[A-Za-z0-9_.\-]{1,128}$")


def build_admission_router(admission: AdmissionService) -> APIRouter:
    router = APIRouter(prefix="/api/v1", responses=error_responses(401, 403, 422, 503))

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
