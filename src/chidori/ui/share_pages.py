"""What a share link opens, with no login: `/s/{token}` (a job page, read-only, or a dataset's
history: the runs its creator may see), `/s/{token}/log` and `/s/{token}/log/download` (a
shared job's driver log), `/s/{token}/progress` (its Spark progress, as the API answers it).

Any link that is tampered with, expired or revoked, or whose job is gone, gets the same
refusal (404), which says nothing about what the link pointed at.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from chidori.domain.errors import ChidoriError, NotFound
from chidori.domain.records import Job, Share
from chidori.services.history import HistoryService
from chidori.services.identity import Actor, IdentityService
from chidori.services.jobs import JobService
from chidori.services.shares import ShareRefused, ShareService
from chidori.ui import views
from chidori.ui.routes import HISTORY_RUNS, UiOptions, job_context, render
from chidori.web.job_views import log_download, progress_detail_view

TOKEN_MAX = 512
PRIVATE = {"Cache-Control": "no-store", "X-Robots-Tag": "noindex, nofollow"}


def build_share_pages_router(
    shares: ShareService,
    jobs: JobService,
    identity: IdentityService,
    history: HistoryService | None = None,
    options: UiOptions | None = None,
) -> APIRouter:
    router = APIRouter(prefix="/s", include_in_schema=False)
    options = options or UiOptions()
    history = history or HistoryService(jobs)

    def refused(request: Request) -> Response:
        response = render(request, "refused.html", {"actor": None}, 404)
        response.headers.update(PRIVATE)
        return response

    def open_share(token: str) -> Share:
        if len(token) > TOKEN_MAX:
            raise ShareRefused
        return shares.open(token)

    def shared_job(token: str) -> Job:
        share = open_share(token)
        try:
            return shares.shared_job(share)
        except NotFound as exc:
            raise ShareRefused from exc

    @router.get("/{token}")
    def shared_page(request: Request, token: str) -> Response:
        try:
            share = open_share(token)
            if share.kind == "job":
                job = shared_job(token)
                context = job_context(
                    job, options.history_server_url, shared=True, log_base=f"/s/{token}/log"
                )
                context.update(attempts=[], events=[], can_cancel=False, actor=None)
                # The whole summary (counts and stages), as /s/{token}/progress answers it.
                context["progress"] = progress_detail_view(jobs.progress_unchecked(job.id))
                context["progress_src"] = f"/s/{token}/progress"  # the API needs a login
                response = render(request, "job.html", context)
            elif share.schema_name and share.table_name:
                # The runs its creator may see (now): a link never shows more than that.
                try:
                    creator = Actor(identity.principal_for(share.created_by), None)
                except ChidoriError as exc:
                    raise ShareRefused from exc
                runs = history.runs(creator, share.schema_name, share.table_name, HISTORY_RUNS)
                response = render(
                    request,
                    "history.html",
                    {
                        "actor": None,
                        "schema": share.schema_name,
                        "table": share.table_name,
                        "runs": runs.runs,
                        "runs_data": views.runs_data(runs.runs, link_jobs=False),
                        "shared": True,
                        "expires_at": share.expires_at,
                    },
                )
            else:
                raise ShareRefused
        except ShareRefused:
            return refused(request)
        response.headers.update(PRIVATE)
        return response

    @router.get("/{token}/log")
    def shared_log(
        token: str,
        tail: Annotated[int | None, Query(ge=0, le=1_000_000)] = None,
        offset: Annotated[int | None, Query(ge=0, le=2**63 - 1)] = None,
    ) -> Response:
        """The shared job's driver log: the last `tail` lines, or from byte `offset`."""
        try:
            job = shared_job(token)
            chunk = jobs.read_log_unchecked(job.id, None, offset, None if offset else tail)
        except (ShareRefused, NotFound):
            return Response("This link is not valid.", status_code=404, headers=PRIVATE)
        return Response(
            chunk.data,
            media_type="text/plain; charset=utf-8",
            headers={
                **PRIVATE,
                "X-Log-Offset": str(chunk.next_offset),
                "X-Log-Size": str(chunk.size),
                "X-Job-State": job.state.value,
                **({"X-Log-Gone": "true"} if chunk.size == 0 and jobs.log_gone(job.id) else {}),
            },
        )

    @router.get("/{token}/progress")
    def shared_progress(token: str) -> Response:
        """The shared job's Spark progress: what GET /api/v1/jobs/{id}/progress answers."""
        try:
            job = shared_job(token)
            shown = progress_detail_view(jobs.progress_unchecked(job.id))
        except (ShareRefused, NotFound):
            return JSONResponse(
                {"error": {"code": "not_found", "message": "This link is not valid."}},
                status_code=404,
                headers=PRIVATE,
            )
        return JSONResponse(shown if shown is not None else {"progress": None}, headers=PRIVATE)

    @router.get("/{token}/log/download")
    def shared_log_download(token: str) -> Response:
        try:
            job = shared_job(token)
            filename, size, chunks = jobs.download_log(None, job.id)
        except ShareRefused:
            return Response("This link is not valid.", status_code=404, headers=PRIVATE)
        except NotFound:
            return Response("No driver log (yet, or any more).", status_code=404, headers=PRIVATE)
        response = log_download(filename, size, chunks)
        response.headers.update(PRIVATE)
        return response

    return router
