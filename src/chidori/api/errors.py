"""The one place where errors become HTTP responses: `{"error": {code, message, fields}}`."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

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
    StoreUnavailable,
    Unauthenticated,
    UnsupportedMediaType,
)

log = logging.getLogger(__name__)

STATUS_BY_ERROR: list[tuple[type[ChidoriError], int]] = [
    (InvalidRequest, 422),
    (NotFound, 404),
    (Conflict, 409),
    (Unauthenticated, 401),
    (Forbidden, 403),
    (PayloadTooLarge, 413),
    (RateLimited, 429),
    (UnsupportedMediaType, 415),
    (StoreUnavailable, 503),
    (BackendError, 502),
]


def error_body(code: str, message: str, fields: list[FieldError] | None = None) -> dict[str, Any]:
    return {
        "error": {
            "code": code,
            "message": message,
            "fields": [{"field": f.field, "message": f.message} for f in fields or []],
        }
    }


def _status_for(exc: ChidoriError) -> int:
    for error_type, status in STATUS_BY_ERROR:
        if isinstance(exc, error_type):
            return status
    return 400


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
    headers = None
    if isinstance(exc, Unauthenticated):
        headers = {"WWW-Authenticate": "Bearer"}
    elif isinstance(exc, RateLimited):
        headers = {"Retry-After": str(max(1, round(exc.retry_after)))}
    return JSONResponse(
        error_body(exc.code, exc.message, exc.fields),
        status_code=_status_for(exc),
        headers=headers,
    )


def validation_error_response(exc: RequestValidationError) -> JSONResponse:
    code, fields = _validation_fields(exc)
    message = "; ".join(f"{f.field}: {f.message}" for f in fields) or "invalid request"
    status = 400 if code == "malformed_json" else 422
    return JSONResponse(error_body(code, message, fields), status_code=status)


def install_error_handlers(app: FastAPI) -> None:
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
