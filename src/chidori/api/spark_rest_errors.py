"""The Spark REST listener's error answers: one table from error class to status, and Spark's
`ErrorResponse` body (`{"action": "ErrorResponse", "serverSparkVersion", "message"}`), as
exception handlers on the listener's own application. The listener serves this protocol only,
so its handlers are the app's: domain errors, the protocol's own refusals (`RestError`), and
anything unexpected (500, the trace to the log only).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from chidori.api.errors import StatusTable, protocol_table, status_for
from chidori.api.spark_rest_messages import ErrorResponse, RestError, in_request_terms
from chidori.domain.errors import (
    ChidoriError,
    Conflict,
    InvalidRequest,
    RateLimited,
    Unauthenticated,
    UnsupportedMediaType,
)

log = logging.getLogger(__name__)

SPARK_REST_OVERRIDES: StatusTable = {
    # Spark's RestSubmissionServer answers what it refuses 400 (no 409, 415 or 422).
    InvalidRequest: 400,
    Conflict: 400,
    UnsupportedMediaType: 400,
    # The run-as user was disabled: nothing the caller can fix by authenticating.
    Unauthenticated: 403,
}
"""Where the Spark REST listener answers otherwise than `BASE_STATUS` (the rest, 5xx
included, as REST does)."""
SPARK_REST_STATUS: StatusTable = protocol_table(SPARK_REST_OVERRIDES)


def spark_error(
    version: str, status: int, message: str, highest: str | None = None
) -> JSONResponse:
    """Spark's ErrorResponse, from a server speaking Spark `version`."""
    body = ErrorResponse(
        server_spark_version=version, message=message, highest_protocol_version=highest
    ).body()
    return JSONResponse(body, status_code=status)


def spark_error_response(version: str, exc: ChidoriError) -> JSONResponse:
    """A domain error as the listener answers it: an InvalidRequest names the request's own
    fields (`appResource`, `sparkProperties.x`), not the job spec's."""
    if isinstance(exc, InvalidRequest):
        exc = in_request_terms(exc)
    response = spark_error(version, status_for(SPARK_REST_STATUS, exc), exc.message)
    if isinstance(exc, RateLimited):
        response.headers["Retry-After"] = str(max(1, round(exc.retry_after)))
    return response


def install_spark_rest_error_handlers(app: FastAPI, version: str) -> None:
    async def _rest_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RestError)
        return spark_error(version, exc.status, exc.message, exc.highest_version)

    async def _domain(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ChidoriError)
        return spark_error_response(version, exc)

    async def _unexpected(request: Request, _exc: Exception) -> Response:
        log.exception("unhandled error on Spark REST %s %s", request.method, request.url.path)
        return spark_error(version, 500, "Internal server error")

    app.add_exception_handler(RestError, _rest_error)
    app.add_exception_handler(ChidoriError, _domain)
    app.add_exception_handler(Exception, _unexpected)
