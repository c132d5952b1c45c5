"""Python environments through the API: a job's own (`GET /api/v1/jobs/{id}/environment`),
the built ones (`GET /api/v1/environments`, admins), pruning them
(`POST /api/v1/admin/environments/prune`, admins), and base environments
(`GET /api/v1/environments/base`; admins create and delete them under `/admin/`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from chidori.api.deps import CurrentActor
from chidori.api.schemas import error_responses
from chidori.domain.environments import (
    MAX_REQUIREMENTS,
    BaseEnvironment,
    Environment,
    JobEnvironment,
    check_requirement,
    parse_size_bytes,
)
from chidori.domain.spec import Identifier
from chidori.services.environments import EnvironmentService
from chidori.web.job_views import MAX_ID


class JobEnvironmentOut(BaseModel):
    job_id: int
    state: str = Field(description="preparing, ready or failed")
    key: str | None = Field(description="The environment's key (hash of lock, Python, platform)")
    packages: dict[str, str] = Field(description="Resolved versions, pyspark and py4j excluded")
    log: str | None = Field(description="Resolution and build output")

    @classmethod
    def of(cls, found: JobEnvironment) -> JobEnvironmentOut:
        return cls(
            job_id=found.job_id,
            state=found.state.value,
            key=found.env_key,
            packages=found.packages,
            log=found.log,
        )


class EnvironmentOut(BaseModel):
    key: str
    python: str
    platform: str
    packages: dict[str, str]
    size_bytes: int
    build_seconds: float
    built_by: str
    created_at: datetime
    last_used_at: datetime
    uses: int = Field(description="Unfinished jobs that use it (it is never pruned while > 0)")

    @classmethod
    def of(cls, env: Environment) -> EnvironmentOut:
        return cls(**{name: getattr(env, name) for name in cls.model_fields})


class EnvironmentList(BaseModel):
    items: list[EnvironmentOut]


class BaseEnvironmentOut(BaseModel):
    name: str
    requirements: list[str]
    packages: dict[str, str]
    key: str
    created_by: str
    created_at: datetime

    @classmethod
    def of(cls, base: BaseEnvironment) -> BaseEnvironmentOut:
        return cls(
            name=base.name,
            requirements=base.requirements,
            packages=base.packages,
            key=base.env_key,
            created_by=base.created_by,
            created_at=base.created_at,
        )


class BaseEnvironmentList(BaseModel):
    items: list[BaseEnvironmentOut]


class BaseEnvironmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Identifier
    requirements: list[Annotated[str, AfterValidator(check_requirement)]] = Field(
        min_length=1, max_length=MAX_REQUIREMENTS
    )


class PruneIn(BaseModel):
    budget: str | None = Field(
        None, description="Keep at most this much (e.g. 10g, 0); null: the configured budget"
    )

    @field_validator("budget")
    @classmethod
    def _size(cls, value: str | None) -> str | None:
        if value is not None:
            parse_size_bytes(value)  # ValueError: a 422 naming the field
        return value


class PruneOut(BaseModel):
    removed: list[str]


def build_environment_router(environments: EnvironmentService) -> APIRouter:
    router = APIRouter(
        prefix="/api/v1", tags=["environments"], responses=error_responses(401, 403, 404, 422)
    )

    @router.get("/jobs/{job_id}/environment", response_model=JobEnvironmentOut)
    def job_environment(
        who: CurrentActor, job_id: Annotated[int, Path(ge=1, le=MAX_ID)]
    ) -> JobEnvironmentOut:
        """The job's Python environment: its state, resolved packages and build log."""
        return JobEnvironmentOut.of(environments.of_job(who, job_id))

    @router.get("/environments", response_model=EnvironmentList)
    def environment_list(who: CurrentActor) -> EnvironmentList:
        """Built environments, least recently used first, with their use counts (admins)."""
        return EnvironmentList(items=[EnvironmentOut.of(e) for e in environments.built(who)])

    @router.post(
        "/admin/environments/prune", response_model=PruneOut, responses=error_responses(400, 413)
    )
    def prune_environments(who: CurrentActor, body: PruneIn) -> PruneOut:
        """Remove unused environments, least recently used first, down to the budget."""
        budget = None if body.budget is None else parse_size_bytes(body.budget)
        return PruneOut(removed=environments.prune(who, budget))

    @router.get("/environments/base", response_model=BaseEnvironmentList)
    def base_environment_list(who: CurrentActor) -> BaseEnvironmentList:
        """Base environments jobs may name (`environment: NAME` in the spec)."""
        return BaseEnvironmentList(
            items=[BaseEnvironmentOut.of(b) for b in environments.bases(who)]
        )

    @router.post(
        "/admin/environments/base",
        response_model=BaseEnvironmentOut,
        status_code=201,
        responses=error_responses(400, 409, 413),
    )
    def create_base_environment(who: CurrentActor, body: BaseEnvironmentIn) -> BaseEnvironmentOut:
        """Resolve and build a base environment now, and keep it (admins)."""
        return BaseEnvironmentOut.of(environments.create_base(who, body.name, body.requirements))

    @router.delete("/admin/environments/base/{name}", status_code=204)
    def delete_base_environment(
        who: CurrentActor, name: Annotated[str, Path(max_length=128)]
    ) -> None:
        """Forget a base environment; its folder goes once no job uses it (admins)."""
        environments.delete_base(who, name)

    return router
