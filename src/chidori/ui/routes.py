"""UI pages: sign in and out, jobs, one job, dataset history, queues, share links."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from chidori.domain.errors import (
    ChidoriError,
    Forbidden,
    InvalidRequest,
    NotFound,
    RateLimited,
    Unauthenticated,
)
from chidori.domain.identity import Role
from chidori.domain.records import Job
from chidori.domain.states import JobState
from chidori.domain.units import parse_duration_seconds
from chidori.services.admission import AdmissionService
from chidori.services.history import HistoryService
from chidori.services.jobs import JobService
from chidori.services.shares import IssuedShare, ShareService
from chidori.ui import live, queue_views, rerun, views
from chidori.ui.session import (
    LOGIN_CSRF_COOKIE,
    Session,
    SessionManager,
    login_csrf_token,
    set_login_csrf,
)
from chidori.web.job_views import MAX_ID

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.filters["duration"] = views.format_duration
templates.env.filters["when"] = views.format_time
templates.env.filters["elapsed"] = live.elapsed_seconds
templates.env.filters["percent"] = live.percent
templates.env.filters["iso_time"] = live.iso_time
templates.env.filters["progress"] = live.progress_of
templates.env.filters["list_reason"] = views.list_reason
templates.env.filters["row_version"] = views.row_version
static_files = StaticFiles(directory=HERE / "static")

LOG_TAIL_LINES = 500
HISTORY_RUNS = 500
LIFETIMES = (("1h", "1 hour"), ("1d", "1 day"), ("7d", "7 days"), ("30d", "30 days"))


@dataclass(frozen=True)
class UiOptions:
    history_server_url: str | None = None
    # A job's resolved Python packages (None: it has no environment), for the job page.
    packages_of: Callable[[int], dict[str, str] | None] | None = None
    # Clusters whose run page is the service's own Spark UI (livy): linked as "Spark UI
    # (service)" instead of the History Server above, which never sees their applications.
    spark_ui_clusters: frozenset[str] = frozenset()


# What a page may say after an action: a code in the URL, its words from here, so nobody can
# make a page say something else by sending a crafted link.
NOTICES = {
    "cancel-requested": "Cancel requested.",
    "rerun": "Submitted as a re-run.",
    "link-revoked": "Link revoked.",
}


def notice_text(request: Request) -> str | None:
    return NOTICES.get(request.query_params.get("notice") or "")


def _safe_next(target: str | None) -> str:
    """Only redirect within the UI (no open redirects)."""
    if target and target.startswith("/ui") and not target.startswith("//"):
        return target
    return "/ui"


def render(request: Request, name: str, context: dict[str, Any], status: int = 200) -> HTMLResponse:
    response = templates.TemplateResponse(request, name, context, status_code=status)
    assert isinstance(response, HTMLResponse)
    return response


def job_context(
    job: Job, history_server_url: str | None, *, shared: bool, log_base: str
) -> dict[str, Any]:
    """What the job page shows, signed in or through a share link."""
    return {
        "job": job,
        "spec_json": views.spec_json(job),
        "start_title": views.start_title(job),
        "history_server_link": views.history_server_link(history_server_url, job),
        "dataset_link": None if shared else views.dataset_link(job),
        "log_base": log_base,
        "log_tail": LOG_TAIL_LINES,
        "active": job.state in views.ACTIVE_STATES,
        "job_active": job.state in views.ACTIVE_STATES,
        "progress": live.progress_of(job),
        "progress_src": f"/api/v1/jobs/{job.id}/progress",
        "shared": shared,
        "rerun_of": rerun.rerun_of(job),
        "submit_command": None if shared else rerun.shown_command(job),
    }


def build_ui_router(
    jobs: JobService,
    sessions: SessionManager,
    admission: AdmissionService | None = None,
    shares: ShareService | None = None,
    history: HistoryService | None = None,
    options: UiOptions | None = None,
) -> APIRouter:
    router = APIRouter(prefix="/ui", include_in_schema=False)
    options = options or UiOptions()
    history = history or HistoryService(jobs)

    def login_page(request: Request, next_page: str, error: str | None, status: int) -> Response:
        csrf = login_csrf_token(request)
        response = render(
            request,
            "login.html",
            {"actor": None, "next": next_page, "error": error, "csrf": csrf},
            status,
        )
        set_login_csrf(response, csrf)
        return response

    def session_of(request: Request) -> Session | Response:
        """The session, or a redirect to the sign-in page (keeping where the user was going)."""
        try:
            session = sessions.read(request)
        except Unauthenticated:
            session = None
        if session is not None:
            return session
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/ui/login?{urlencode({'next': target})}", status_code=303)

    def page(
        request: Request, session: Session, name: str, context: dict[str, Any], status: int = 200
    ) -> HTMLResponse:
        return render(
            request, name, {"actor": session.actor, "csrf": session.csrf, **context}, status
        )

    def error_page(request: Request, session: Session, exc: ChidoriError) -> HTMLResponse:
        status = {
            "not_found": 404,
            "forbidden": 403,
            "invalid_request": 422,
            "conflict": 409,
        }.get(exc.code, 400)
        context = {"message": exc.message, "status": status}
        return page(request, session, "error.html", context, status)

    def checked(request: Request, csrf: str) -> Session | Response:
        """The session of a POST whose CSRF token matches, or the page to answer instead."""
        session = session_of(request)
        if isinstance(session, Response):
            return session
        try:
            SessionManager.check_csrf(session, csrf)
        except Forbidden as exc:
            return error_page(request, session, exc)
        return session

    # ---- sign in and out ----------------------------------------------------------------------

    @router.get("/login")
    def login_form(request: Request, next: str | None = None) -> Response:
        return login_page(request, _safe_next(next), None, 200)

    @router.post("/login")
    def login(
        request: Request,
        token: Annotated[str, Form(max_length=512)],
        csrf: Annotated[str, Form(max_length=128)],
        next: Annotated[str, Form(max_length=2048)] = "/ui",
    ) -> Response:
        expected = request.cookies.get(LOGIN_CSRF_COOKIE)
        if not expected or expected != csrf:
            return login_page(request, _safe_next(next), "The form expired: please try again.", 403)
        response = RedirectResponse(_safe_next(next), status_code=303)
        try:
            sessions.open(response, request, token.strip())
        except Unauthenticated:
            return login_page(request, _safe_next(next), "That token is not valid.", 401)
        except RateLimited as exc:
            refused = login_page(request, _safe_next(next), "Too many failed sign-ins.", 429)
            refused.headers["Retry-After"] = str(max(1, round(exc.retry_after)))
            return refused
        response.delete_cookie(LOGIN_CSRF_COOKIE, path="/ui")
        return response

    @router.post("/logout")
    def logout(request: Request, csrf: Annotated[str, Form(max_length=128)] = "") -> Response:
        response = RedirectResponse("/ui/login", status_code=303)
        try:
            session = sessions.read(request)
        except Unauthenticated:
            session = None
        if session is not None:
            try:
                SessionManager.check_csrf(session, csrf)
            except Forbidden:
                return HTMLResponse("Missing or wrong CSRF token.", status_code=403)
        sessions.close(response, session)
        return response

    # ---- jobs -----------------------------------------------------------------------------------

    @router.get("")
    def jobs_page(request: Request, fragment: str | None = None) -> Response:
        session = session_of(request)
        if isinstance(session, Response):
            return session
        filters = views.JobFilters.parse(request.query_params)
        try:
            result = jobs.search(session.actor, filters.query())
        except ChidoriError as exc:
            return error_page(request, session, exc)
        active = views.any_active(result.items)
        context = {
            "jobs": filters.sorted(result.items),
            "counts": views.state_counts(result.items),
            "filters": filters,
            "states": list(JobState),
            "page_sizes": views.PAGE_SIZES,
            "next_url": filters.next_url(result.next_before_id),
            "previous_url": filters.previous_url(),
        }
        if fragment:
            response = page(request, session, "_job_rows.html", context)
            response.headers["X-Chidori-Active"] = "1" if active else "0"
            return response
        return page(request, session, "jobs.html", context)

    def job_page_context(
        request: Request, session: Session, job_id: str, attempt: str | None
    ) -> dict[str, Any]:
        """Everything the job page and its live sections show (raises NotFound)."""
        number = int(job_id) if job_id.isascii() and job_id.isdigit() else 0
        if not 1 <= number <= MAX_ID:
            raise NotFound(f"job {job_id[:40]} not found")
        job = jobs.get(session.actor, number)
        attempts = jobs.attempts(session.actor, number)
        events = jobs.events(session.actor, number)
        tabs = live.attempt_tabs(job.id, attempts)
        chosen = next((t for t in tabs if attempt and str(t.number) == attempt), None)
        if attempt and chosen is None:
            raise NotFound(f"job {job.id} has no attempt {attempt[:20]}")
        base = chosen.log_base if chosen else f"/api/v1/jobs/{job.id}/logs"
        context = job_context(job, options.history_server_url, shared=False, log_base=base)
        role = session.actor.principal.role
        context.update(
            attempts=attempts,
            events=events,
            tabs=tabs,
            log_attempt=chosen.number if chosen else (tabs[-1].number if tabs else None),
            can_cancel=role in (Role.ADMIN, Role.USER) and not job.state.terminal,
            can_rerun=role in (Role.ADMIN, Role.USER) and context["submit_command"] is not None,
            lifetimes=LIFETIMES,
            notice=notice_text(request),
            actor=session.actor,
            csrf=session.csrf,
            packages=(
                options.packages_of(job.id)
                if options.packages_of is not None and job.spec.requirements
                else None
            ),
        )
        service_ui = attempts[-1].remote_url if attempts else None
        if job.spec.cluster in options.spark_ui_clusters:
            context["history_server_link"] = None
            context["service_spark_ui"] = views.web_link(service_ui)
        if chosen is not None:  # a finished attempt's log does not grow: nothing to follow
            context["active"] = chosen.running and context["active"]
        return context

    @router.get("/jobs/{job_id}")
    def job_page(request: Request, job_id: str, attempt: str | None = None) -> Response:
        session = session_of(request)
        if isinstance(session, Response):
            return session
        try:
            context = job_page_context(request, session, job_id, attempt)
        except ChidoriError as exc:
            return error_page(request, session, exc)
        context["rerun_nonce"] = rerun.new_nonce()  # one per page shown: the form sent once
        return page(request, session, "job.html", context)

    @router.get("/jobs/{job_id}/live")
    def job_live(request: Request, job_id: str) -> Response:
        """The job page's live sections as JSON, polled by job_live.js while the job runs."""
        session = session_of(request)
        if isinstance(session, Response):  # signed out: the script stops and says so
            return JSONResponse({"error": "signed out"}, status_code=401)
        try:
            context = job_page_context(request, session, job_id, None)
        except ChidoriError as exc:
            return JSONResponse({"error": exc.message}, status_code=404)
        job: Job = context["job"]
        sections = live.render_sections(templates.env, context)
        body = {"state": job.state.value, "final": job.state.terminal, "sections": sections}
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    @router.post("/jobs/{job_id}/cancel")
    def cancel_job(
        request: Request, job_id: int, csrf: Annotated[str, Form(max_length=128)] = ""
    ) -> Response:
        session = checked(request, csrf)
        if isinstance(session, Response):
            return session
        try:
            jobs.cancel(session.actor, job_id)
        except ChidoriError as exc:
            return error_page(request, session, exc)
        if request.headers.get("X-Chidori-Live") == "1":  # job_live.js: it refreshes itself
            return Response(status_code=204)
        return RedirectResponse(f"/ui/jobs/{job_id}?notice=cancel-requested", status_code=303)

    @router.post("/jobs/{job_id}/rerun")
    def rerun_job(
        request: Request,
        job_id: str,
        csrf: Annotated[str, Form(max_length=128)] = "",
        nonce: Annotated[str, Form(max_length=64)] = "",
    ) -> Response:
        """A new job with this job's spec, submitted as the caller; its page next."""
        session = checked(request, csrf)
        if isinstance(session, Response):
            return session
        number = int(job_id) if job_id.isascii() and job_id.isdigit() else 0
        try:
            if not 1 <= number <= MAX_ID:
                raise NotFound(f"job {job_id[:40]} not found")
            job = rerun.rerun_job(jobs, session.actor, number, nonce)
        except ChidoriError as exc:
            return error_page(request, session, exc)
        return RedirectResponse(f"/ui/jobs/{job.id}?notice=rerun", status_code=303)

    # ---- share links ------------------------------------------------------------------------

    def share_result(
        request: Request,
        session: Session,
        make: Callable[[ShareService, float], IssuedShare],
        back: str,
        expires_in: str,
    ) -> Response:
        if shares is None:
            return error_page(request, session, NotFound("share links are not enabled"))
        try:
            try:
                seconds = parse_duration_seconds(expires_in.strip() or "7d")
            except ValueError as exc:
                raise InvalidRequest.for_field("expires_in", str(exc)) from exc
            issued = make(shares, seconds)
        except ChidoriError as exc:
            return error_page(request, session, exc)
        url = str(request.base_url).rstrip("/") + issued.path
        context = {"url": url, "share": issued.share, "back": back}
        return page(request, session, "share_created.html", context)

    @router.post("/jobs/{job_id}/share")
    def share_job(
        request: Request,
        job_id: int,
        csrf: Annotated[str, Form(max_length=128)] = "",
        expires_in: Annotated[str, Form(max_length=32)] = "7d",
    ) -> Response:
        session = checked(request, csrf)
        if isinstance(session, Response):
            return session
        actor = session.actor
        return share_result(
            request,
            session,
            lambda service, seconds: service.share_job(actor, job_id, seconds),
            f"/ui/jobs/{job_id}",
            expires_in,
        )

    @router.post("/history/share")
    def share_dataset(
        request: Request,
        schema_name: Annotated[str, Form(alias="schema", min_length=1, max_length=256)],
        table_name: Annotated[str, Form(alias="table", min_length=1, max_length=256)],
        csrf: Annotated[str, Form(max_length=128)] = "",
        expires_in: Annotated[str, Form(max_length=32)] = "7d",
    ) -> Response:
        session = checked(request, csrf)
        if isinstance(session, Response):
            return session
        actor = session.actor
        return share_result(
            request,
            session,
            lambda service, seconds: service.share_dataset(actor, schema_name, table_name, seconds),
            "/ui/history?" + urlencode({"schema": schema_name, "table": table_name}),
            expires_in,
        )

    @router.get("/shares")
    def shares_page(request: Request) -> Response:
        session = session_of(request)
        if isinstance(session, Response):
            return session
        items = shares.list(session.actor) if shares is not None else []
        now = datetime.now(UTC)
        return page(
            request,
            session,
            "shares.html",
            {"shares": items, "now": now, "notice": notice_text(request)},
        )

    @router.post("/shares/{share_id}/revoke")
    def revoke_share(
        request: Request, share_id: int, csrf: Annotated[str, Form(max_length=128)] = ""
    ) -> Response:
        session = checked(request, csrf)
        if isinstance(session, Response):
            return session
        try:
            if shares is None or not 1 <= share_id <= MAX_ID:
                raise NotFound(f"share {share_id} not found")
            shares.revoke(session.actor, share_id)
        except ChidoriError as exc:
            return error_page(request, session, exc)
        return RedirectResponse("/ui/shares?notice=link-revoked", status_code=303)

    # ---- dataset history ----------------------------------------------------------------------

    @router.get("/history")
    def history_page(request: Request, schema: str = "", table: str = "") -> Response:
        session = session_of(request)
        if isinstance(session, Response):
            return session
        schema, table = schema.strip()[:256], table.strip()[:256]
        runs: list[Job] = []
        if schema and table:
            runs = history.runs(session.actor, schema, table, HISTORY_RUNS).runs
        return page(
            request,
            session,
            "history.html",
            {
                "schema": schema,
                "table": table,
                "runs": runs,
                "runs_data": views.runs_data(runs, link_jobs=True),
                "shared": False,
                "lifetimes": LIFETIMES,
            },
        )

    # ---- queues and capacity ------------------------------------------------------------------

    @router.get("/queues")
    def queues_page(request: Request) -> Response:
        session = session_of(request)
        if isinstance(session, Response):
            return session
        if admission is None:
            return error_page(request, session, NotFound("admission is not enabled"))
        context = queue_views.queues_context(admission, session.actor)
        return page(request, session, "queues.html", context)

    @router.get("/queues/live")
    def queues_live(request: Request) -> Response:
        """The queues page's live sections as JSON, polled by queues_live.js."""
        session = session_of(request)
        if isinstance(session, Response):
            return JSONResponse({"error": "signed out"}, status_code=401)
        if admission is None:
            return JSONResponse({"error": "admission is not enabled"}, status_code=404)
        context = queue_views.queues_context(admission, session.actor)
        sections = queue_views.render_queue_sections(templates.env, context)
        return JSONResponse({"sections": sections}, headers={"Cache-Control": "no-store"})

    return router
