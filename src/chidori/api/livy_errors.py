"""Livy's error answers: one table from error class to status, and Livy's body (`{"msg": ...}`).

The Livy routes live on the same FastAPI app as the REST API (at the root: `/batches`,
`/sessions`, `/version`), whose default handler answers domain errors in REST's shape. So
that neither protocol's answers leak into the other, the Livy routers are built with
`route_class=LivyRoute`: the route wraps any domain error its endpoint raises in `LivyError`,
and the handler for `LivyError` (installed on the app by `install_livy_error_handler`)
answers from `LIVY_STATUS` in Livy's shape. Errors raised before the route runs (the size and
media-type middleware, FastAPI's own request validation) keep the app's REST answers, as they
are documented in the OpenAPI document.

A mounted sub-application would have had its own handlers too, but Starlette leaves a mounted
app's routes out of the parent's OpenAPI document and a mount at `/` would shadow the routes
after it; a route class keeps the paths, the routing and the document exactly as they were.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute

from chidori.api.errors import StatusTable, protocol_table, status_for
from chidori.domain.errors import ChidoriError, Conflict, InvalidRequest, NotFound

LIVY_OVERRIDES: StatusTable = {
    InvalidRequest: 400,  # Livy answers every request it refuses 400 (no 422)
    # A request the current state refuses (e.g. too many statements at once): Livy's
    # servlets say 400 for these as well.
    Conflict: 400,
}
"""Where Livy answers otherwise than `BASE_STATUS` (the rest, 5xx included, as REST does)."""
LIVY_STATUS: StatusTable = protocol_table(LIVY_OVERRIDES)


class LivyError(Exception):
    """A domain error raised by a Livy route, to be answered in Livy's shape."""

    def __init__(self, error: ChidoriError) -> None:
        super().__init__(error.message)
        self.error = error


def livy_error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"msg": message}, status_code=status)


def livy_error_response(exc: ChidoriError) -> JSONResponse:
    """A domain error as Livy answers errors."""
    return livy_error(status_for(LIVY_STATUS, exc), exc.message)


def install_livy_error_handler(app: FastAPI) -> None:
    async def _livy(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, LivyError)
        return livy_error_response(exc.error)

    app.add_exception_handler(LivyError, _livy)


Endpoint = Callable[[Request], Coroutine[Any, Any, Response]]


class LivyRoute(APIRoute):
    """A Livy route: the domain errors it raises are answered in Livy's shape (see above)."""

    def livy_error(self, _request: Request, exc: ChidoriError) -> LivyError:
        return LivyError(exc)

    def get_route_handler(self) -> Endpoint:
        handler = super().get_route_handler()

        async def livy_route(request: Request) -> Response:
            try:
                return await handler(request)
            except ChidoriError as exc:
                raise self.livy_error(request, exc) from exc

        return livy_route


class LivyBatchRoute(LivyRoute):
    """A Livy batch route: a missing batch (or its log) is `Session 'ID' not found.`, Livy's
    words for any batch it does not have."""

    def livy_error(self, request: Request, exc: ChidoriError) -> LivyError:
        batch_id = request.path_params.get("batch_id")
        if isinstance(exc, NotFound) and batch_id is not None:
            # The path was validated as an integer before the endpoint ran: shown as one.
            shown = int(batch_id) if str(batch_id).strip().isdigit() else batch_id
            return LivyError(NotFound(f"Session '{shown}' not found."))
        return LivyError(exc)
