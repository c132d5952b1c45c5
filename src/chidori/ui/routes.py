"""UI pages: sign in and out, and the jobs page."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from chidori.errors import Forbidden, Unauthenticated
from chidori.records import JobQuery
from chidori.services.jobs import JobService
from chidori.ui.session import (
    LOGIN_CSRF_COOKIE,
    SessionManager,
    login_csrf_token,
    set_login_csrf,
)

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
static_files = StaticFiles(directory=HERE / "static")


def _safe_next(target: str | None) -> str:
    """Only redirect within the UI (no open redirects)."""
    if target and target.startswith("/ui") and not target.startswith("//"):
        return target
    return "/ui"


def build_ui_router(jobs: JobService, sessions: SessionManager) -> APIRouter:
    router = APIRouter(prefix="/ui", include_in_schema=False)

    def login_page(request: Request, next_page: str, error: str | None, status: int) -> Response:
        csrf = login_csrf_token(request)
        response = templates.TemplateResponse(
            request,
            "login.html",
            {"actor": None, "next": next_page, "error": error, "csrf": csrf},
            status_code=status,
        )
        set_login_csrf(response, csrf)
        return response

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
        SessionManager.close(response)
        return response

    @router.get("")
    def jobs_page(request: Request) -> Response:
        try:
            session = sessions.read(request)
        except Unauthenticated:
            session = None
        if session is None:
            return RedirectResponse(f"/ui/login?next={request.url.path}", status_code=303)
        page = jobs.search(session.actor, JobQuery(limit=50))
        return templates.TemplateResponse(
            request,
            "jobs.html",
            {"actor": session.actor, "csrf": session.csrf, "jobs": page.items},
        )

    return router
