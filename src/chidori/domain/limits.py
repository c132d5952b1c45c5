"""Admission limits and queue settings as admins write them, and their admission form."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from chidori.domain.admission import Limit, Limits, QueueConfig
from chidori.domain.spec import Memory
from chidori.domain.units import parse_memory_mib

DEFAULT_QUEUE = "default"


class LimitDoc(BaseModel):
    """Caps on what may run at once. `null` = unlimited."""

    model_config = ConfigDict(extra="forbid")

    max_running_jobs: int | None = Field(None, ge=0, le=1_000_000)
    max_memory: Memory | None = None
    max_cores: int | None = Field(None, ge=0, le=10_000_000)

    def limit(self) -> Limit:
        return Limit(
            self.max_running_jobs,
            parse_memory_mib(self.max_memory) if self.max_memory else None,
            self.max_cores,
        )


class LimitsDoc(LimitDoc):
    """Global limits, and optional limits per cluster (`PUT /api/v1/admin/limits`)."""

    clusters: dict[str, LimitDoc] = Field(default_factory=dict)

    def limits(self) -> Limits:
        return Limits(self.limit(), {name: doc.limit() for name, doc in self.clusters.items()})


class QueueDoc(LimitDoc):
    """A queue's rank, fair-share weight and quota (`PUT /api/v1/admin/queues/{name}`)."""

    priority: int = Field(0, ge=-1000, le=1000, description="Higher-priority queues go first.")
    weight: float = Field(1.0, gt=0, le=1000, description="Share against equal-priority queues.")

    def config(self, name: str) -> QueueConfig:
        return QueueConfig(name, self.priority, self.weight, self.limit())
