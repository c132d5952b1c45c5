"""Where domain errors become HTTP answers: the lookup every protocol's error table uses, and
the REST API's table and exception handlers (`{"error": {code, message, fields}}`).

Each protocol Chidori serves has one table from error class to status, rendered in its own
error body by exception handlers on the application that serves it: REST here (`/api/v1`, the
app's default), Livy in `livy_errors.py` (its routes at the root of the same app), Spark's REST
submission protocol in `spark_rest_errors.py` (its own listener). The tables share one base,
`BASE_STATUS`; each protocol states only where it answers otherwise (`protocol_table`). Routes
never catch domain errors to answer them; they raise, and the protocol's handler answers.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from chidori.config import ConfigError
from chidori.domain.errors import (
    BackendError,
    ChidoriError,
    Conflict,
    FieldError,
    Forbidden,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    Unauthenticated,
    Unavailable,
    UnsupportedMediaType,
)

log = logging.getLogger(__name__)

StatusTable = Mapping[type[ChidoriError], int]
"""A protocol's status for each error class. `ChidoriError` itself is in every table (an
error without a class of its own); every class Chidori raises has an entry of its own or
inherits one from a listed class below ChidoriError (tests/test_error_tables.py checks)."""


def table_entry(table: StatusTable, error_type: type[ChidoriError]) -> type[ChidoriError]:
    """The class whose entry answers `error_type`: the nearest one in its MRO that the table
    lists (so a subclass answers as its parent unless listed itself)."""
    for cls in error_type.__mro__:
        if cls in table:
            return cls
    raise LookupError(f"{error_type.__name__} is not a ChidoriError")


def status_for(table: StatusTable, exc: ChidoriError) -> int:
    """The status `table` gives `exc` (see `table_entry`)."""
    return table[table_entry(table, type(exc))]


BASE_STATUS: StatusTable = {
    ChidoriError: 400,
    InvalidRequest: 422,
    NotFound: 404,
    Conflict: 409,
    Unauthenticated: 401,
    Forbidden: 403,
    PayloadTooLarge: 413,
    RateLimited: 429,
    UnsupportedMediaType: 415,
    # The store, the dispatch broker, shared storage or the sandbox: retry later.
    Unavailable: 503,
    BackendError: 502,
    # The server's configuration, never the caller's doing (raised at start-up in practice).
    ConfigError: 500,
}
"""The status of each error class every protocol starts from: a protocol's table is this with
its own overrides (`protocol_table`), so an error class is added here once for all of them."""


def protocol_table(overrides: StatusTable) -> StatusTable:
    """A protocol's table: `BASE_STATUS`, with `overrides` where the protocol answers
    otherwise (each overridden class is one the base lists)."""
    unknown = [cls.__name__ for cls in overrides if cls not in BASE_STATUS]
    if unknown:
        raise ValueError(f"overrides for classes BASE_STATUS does not list: {unknown}")
    return {**BASE_STATUS, **overrides}


REST_STATUS: StatusTable = protocol_table({})  # REST answers with the base statuses


def error_body(code: str, message: str, fields: list[FieldError] | None = None) -> dict[str, Any]:
    return {
        "error": {
            "code": code,
            "message": message,
            "fields": [{"field": f.field, "message": f.message} for f in fields or []],
        }
    }


def _field_name(location: tuple[Any, ...]) -> str:
    parts = [str(p) for p in location if p not in ("body", "query", "path", "header")]
    name = ""
    for part in parts:
        name += f"[{part}]" if part.isdigit() else (f".{part}" if name else part)
    return name or "body"


def _validation_fields(exc: RequestValidationError) -> tuple[str, list[FieldError]]:
    fields = []
    code = "invalid_request"
    for error in exc.errors():
        kind = error.get("type", "")
        location = tuple(error.get("loc", ()))
        if kind == "json_invalid":
            code = "malformed_json"
            detail = error.get("ctx", {}).get("error", "invalid JSON")
            fields.append(FieldError("body", f"malformed JSON: {detail}"))
            continue
        message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
        if kind == "extra_forbidden":
            message = "unknown field"
        elif kind == "missing":
            message = "field required"
        fields.append(FieldError(_field_name(location), message))
    return code, fields


def domain_error_response(exc: ChidoriError) -> JSONResponse:
    """A domain error as the REST API answers it."""
    headers = None
    if isinstance(exc, Unauthenticated):
        headers = {"WWW-Authenticate": "Bearer"}
    elif isinstance(exc, RateLimited):
        headers = {"Retry-After": str(max(1, round(exc.retry_after)))}
    return JSONResponse(
        error_body(exc.code, exc.message, exc.fields),
        status_code=status_for(REST_STATUS, exc),
        headers=headers,
    )


def validation_error_response(exc: RequestValidationError) -> JSONResponse:
    code, fields = _validation_fields(exc)
    message = "; ".join(f"{f.field}: {f.message}" for f in fields) or "invalid request"
    status = 400 if code == "malformed_json" else 422
    return JSONResponse(error_body(code, message, fields), status_code=status)


def install_error_handlers(app: FastAPI) -> None:
    """The REST API's handlers: the app's default for domain errors, request validation,
    routing errors (404, 405) and anything unexpected (500, the trace to the log only)."""

    @app.exception_handler(ChidoriError)
    async def _domain(_request: Request, exc: ChidoriError) -> JSONResponse:
        return domain_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(
            error_body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(RecursionError)
    async def _too_deep(_request: Request, _exc: RecursionError) -> JSONResponse:
        # A body nested deeper than any parser or validator recurses: the caller's doing.
        return domain_error_response(InvalidRequest("the body is nested too deeply"))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, _exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(error_body("internal", "internal server error"), status_code=500)
