"""The FastAPI application, assembled from services built in the composition root."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from chidori import __version__
from chidori.api.errors import error_body, install_error_handlers
from chidori.api.routes import build_router
from chidori.api.schemas import Status
from chidori.artifacts import ArtifactStore
from chidori.auth import Authenticator
from chidori.errors import StoreUnavailable
from chidori.services.jobs import JobService

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def create_app(
    jobs: JobService,
    artifacts: ArtifactStore,
    authenticator: Authenticator,
    readiness: Callable[[], None],
    lifespan: Lifespan | None = None,
) -> FastAPI:
    """`readiness` raises StoreUnavailable (or another ChidoriError) while not ready."""

    @asynccontextmanager
    async def no_lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield

    app = FastAPI(
        title="Chidori",
        version=__version__,
        description="Control plane for Spark and AI/ML jobs.",
        lifespan=lifespan or no_lifespan,
    )
    install_error_handlers(app)
    app.state.authenticator = authenticator
    app.include_router(build_router(jobs, artifacts))

    @app.get("/healthz", response_model=Status, tags=["health"])
    def healthz() -> Status:
        """The process is up."""
        return Status(status="ok")

    @app.get("/readyz", response_model=Status, tags=["health"], responses={503: {}})
    def readyz() -> Status | JSONResponse:
        """Ready to serve: the database answers."""
        try:
            readiness()
        except StoreUnavailable as exc:
            return JSONResponse(error_body(exc.code, exc.message), status_code=503)
        return Status(status="ready")

    return app
