"""The dataset index page: `/ui/datasets`, every dataset (schema.table) the signed-in user may
see, with its last run, last success, freshness, recent outcomes and p50/p95 durations."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlencode

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from chidori.domain.errors import Unauthenticated
from chidori.services.datasets import DatasetService, DatasetSummary
from chidori.ui import views
from chidori.ui.routes import render
from chidori.ui.session import SessionManager

QUERY_MAX = 256


def history_url(summary: DatasetSummary) -> str:
    return "/ui/history?" + urlencode({"schema": summary.schema_name, "table": summary.table_name})


def build_dataset_pages_router(datasets: DatasetService, sessions: SessionManager) -> APIRouter:
    router = APIRouter(prefix="/ui", include_in_schema=False)

    @router.get("/datasets")
    def dataset_index(request: Request, q: str = "") -> Response:
        try:
            session = sessions.read(request)
        except Unauthenticated:
            session = None
        if session is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/ui/login?{urlencode({'next': target})}", status_code=303)
        q = q.strip()[:QUERY_MAX]
        now = datetime.now(UTC)
        items = datasets.index(session.actor, q or None)
        rows = [
            {
                "summary": item,
                "url": history_url(item),
                "freshness": views.format_duration(item.freshness_seconds(now)),
            }
            for item in items
        ]
        context = {"actor": session.actor, "csrf": session.csrf, "rows": rows, "q": q}
        return render(request, "datasets.html", context)

    return router
