"""The FastAPI application, assembled from services built in the composition root."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, Response

from chidori import __version__
from chidori.api.admin_routes import build_admin_router
from chidori.api.admission_routes import build_admission_router
from chidori.api.dataset_routes import build_dataset_router
from chidori.api.deps import ProxyAuth
from chidori.api.environment_routes import build_environment_router
from chidori.api.errors import install_error_handlers
from chidori.api.history_routes import build_history_router
from chidori.api.livy_errors import install_livy_error_handler
from chidori.api.livy_routes import build_livy_router
from chidori.api.livy_session_routes import build_livy_session_router
from chidori.api.middleware import (
    JsonBodiesOnly,
    RequestObserver,
    RequestSizeLimit,
    SecurityHeaders,
    TrustedProxyHeaders,
)
from chidori.api.routes import build_router
from chidori.api.schemas import Status, error_responses
from chidori.api.share_routes import build_share_router
from chidori.api.submit import SUBMIT_PATH, SubmitLane, document_job_spec, submission_handler
from chidori.domain.errors import NotFound
from chidori.observe.metrics import Metrics
from chidori.services.admission import AdmissionService
from chidori.services.changes import ChangesService
from chidori.services.datasets import DatasetService
from chidori.services.environments import EnvironmentService
from chidori.services.history import HistoryService
from chidori.services.identity import IdentityService
from chidori.services.jobs import JobService
from chidori.services.sessions import SessionService
from chidori.services.shares import ShareService
from chidori.ui.dataset_pages import build_dataset_pages_router
from chidori.ui.error_pages import install_ui_error_pages
from chidori.ui.routes import UiOptions, build_ui_router, static_files
from chidori.ui.session import SessionManager
from chidori.ui.share_pages import build_share_pages_router

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]
# Routes that take JSON bodies (REST and Livy): forms and text are refused there (415).
JSON_API_PREFIXES = ("/api/", "/batches", "/sessions")


@dataclass(frozen=True)
class HttpLimits:
    max_request_bytes: int = 1024 * 1024
    max_upload_bytes: int = 512 * 1024 * 1024


def create_app(
    jobs: JobService,
    identity: IdentityService,
    admission: AdmissionService,
    readiness: Callable[[], str | None],
    lifespan: Lifespan | None = None,
    proxy_auth: ProxyAuth | None = None,
    limits: HttpLimits | None = None,
    sessions: SessionManager | None = None,
    shares: ShareService | None = None,
    ui_options: UiOptions | None = None,
    warm_rss: Callable[[str], int] | None = None,
    livy_sessions: SessionService | None = None,
    metrics: Metrics | None = None,
    datasets: DatasetService | None = None,
    environments: EnvironmentService | None = None,
) -> FastAPI:
    """`readiness` raises StoreUnavailable while the server cannot serve; it returns what
    an operator should know about a ready server (jobs not isolated), or None."""
    limits = limits or HttpLimits()

    @asynccontextmanager
    async def no_lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield

    app = FastAPI(
        title="Chidori",
        version=__version__,
        description="Control plane for Spark and AI/ML jobs.",
        lifespan=lifespan or no_lifespan,
        # FastAPI's OpenTelemetry hooks look up the providers on every request (a few percent
        # of the submission path); Chidori exports /metrics itself.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        # Served below from a pinned copy installed with Chidori: no CDN at run time.
        docs_url=None,
        redoc_url=None,
    )
    install_error_handlers(app)  # REST's: the default for domain errors
    install_livy_error_handler(app)  # for the Livy routes (see livy_errors.py)
    install_api_docs(app)
    app.state.identity = identity
    app.state.proxy_auth = proxy_auth or ProxyAuth()
    submit = submission_handler(jobs)
    app.include_router(build_router(jobs, submit))
    app.include_router(build_admin_router(identity))
    app.include_router(build_admission_router(admission, warm_rss or (lambda _id: 0)))
    app.include_router(build_livy_router(jobs, livy_sessions))
    if livy_sessions is not None:
        app.include_router(build_livy_session_router(livy_sessions))
    history = HistoryService(jobs)
    app.include_router(build_history_router(history))
    if datasets is not None:  # the dataset index, filter suggestions, run changes
        packages_of = environments.packages_of if environments is not None else None
        app.include_router(build_dataset_router(datasets, ChangesService(jobs, packages_of)))
        if sessions is not None:
            app.include_router(build_dataset_pages_router(datasets, sessions))
    if environments is not None:
        app.include_router(build_environment_router(environments))
    if shares is not None:
        app.state.shares = shares
        app.include_router(build_share_router(shares))
        app.include_router(build_share_pages_router(shares, jobs, identity, history, ui_options))
    if sessions is not None:
        app.state.sessions = sessions
        app.include_router(build_ui_router(jobs, sessions, admission, shares, history, ui_options))
        app.mount("/ui/static", static_files, name="ui-static")
        install_ui_error_pages(app)  # unknown /ui URLs: an HTML 404 page
    app.add_middleware(SubmitLane, handler=submit)  # inside the size limit and headers
    app.add_middleware(JsonBodiesOnly, prefixes=JSON_API_PREFIXES, exempt=("/api/v1/uploads",))
    app.add_middleware(
        RequestSizeLimit,
        limit=limits.max_request_bytes,
        upload_limit=limits.max_upload_bytes,
        upload_prefix="/api/v1/uploads",
    )
    app.add_middleware(SecurityHeaders, exempt_prefixes=("/docs",))
    metrics = metrics or Metrics()
    # Inside the proxy headers (which may copy the scope), so the router's match is seen.
    app.add_middleware(RequestObserver, metrics=metrics, lane_paths=frozenset({SUBMIT_PATH}))
    app.add_middleware(TrustedProxyHeaders, trusts=app.state.proxy_auth.trusts)  # outermost

    @app.get("/healthz", response_model=Status, tags=["health"])
    def healthz() -> Status:
        """The process is up."""
        return Status(status="ok")

    @app.get("/readyz", response_model=Status, tags=["health"], responses=error_responses(503))
    def readyz() -> Status:
        """Ready to serve: the database answers. `detail` says whether jobs are isolated."""
        # Not ready: readiness raises StoreUnavailable or QueueUnavailable, both answer 503.
        return Status(status="ready", detail=readiness())

    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics() -> Response:
        """Prometheus' text format. Unauthenticated, like /healthz: keep it off public networks."""
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    document_job_spec(app)
    return app


# Swagger UI's files, from the pinned `swagger-ui-bundle` package (swagger-ui 4.15.5).
_DOCS_FILES = {
    "swagger-ui-bundle.js": "application/javascript",
    "swagger-ui.css": "text/css",
    "favicon-32x32.png": "image/png",
}


def install_api_docs(app: FastAPI) -> None:
    """`/docs`: the interactive API reference, with every file served by Chidori itself."""
    import swagger_ui_bundle  # type: ignore[import-untyped]

    folder = Path(swagger_ui_bundle.swagger_ui_path)

    @app.get("/docs", include_in_schema=False)
    def api_docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title="Chidori API",
            swagger_js_url="/docs/files/swagger-ui-bundle.js",
            swagger_css_url="/docs/files/swagger-ui.css",
            swagger_favicon_url="/docs/files/favicon-32x32.png",
        )

    @app.get("/docs/files/{name}", include_in_schema=False)
    def api_docs_file(name: str) -> Response:
        media_type = _DOCS_FILES.get(name)
        if media_type is None:
            raise NotFound(f"no file {name!r}")
        return FileResponse(
            folder / name,
            media_type=media_type,
            headers={"Cache-Control": "public, max-age=86400"},
        )
