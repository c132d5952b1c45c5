"""HTML error pages under /ui: a URL no route matches (or a method none takes) answers a page
a person can read and leave, not the REST API's JSON error body."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from chidori.ui.routes import render

Handler = Callable[[Request, Exception], Response | Awaitable[Response]]
MESSAGES = {404: "There is no page at this address.", 405: "This page cannot do that."}


def install_ui_error_pages(app: FastAPI) -> None:
    """Answer routing errors under /ui with the UI's error page; everything else keeps the
    handler installed before (the REST API's)."""
    api_handler: Handler | None = app.exception_handlers.get(StarletteHTTPException)

    async def answer(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        path = request.url.path
        if (path == "/ui" or path.startswith("/ui/")) and exc.status_code in MESSAGES:
            context = {
                "actor": None,
                "status": exc.status_code,
                "message": MESSAGES[exc.status_code],
            }
            return render(request, "error.html", context, exc.status_code)
        if api_handler is None:
            raise exc
        answered = api_handler(request, exc)
        return answered if isinstance(answered, Response) else await answered

    app.add_exception_handler(StarletteHTTPException, answer)
