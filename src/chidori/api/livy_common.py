"""What the Livy routers share: Livy's error shape (`{"msg": ...}`) and status codes, and
their OpenAPI documentation."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

from chidori.api.schemas import ErrorResponse
from chidori.errors import ChidoriError, InvalidRequest

_STATUS = {
    "invalid_request": 400,
    "not_found": 404,
    "unauthenticated": 401,
    "forbidden": 403,
    "store_unavailable": 503,
}
MAX_WINDOW = 1000  # Livy lists are paged with from/size; deeper pages go through /api/v1/jobs


class LivyMessage(BaseModel):
    msg: str


LIVY_ERRORS: dict[int | str, dict[str, Any]] = {
    # Malformed JSON is refused before our handler runs, in Chidori's own error shape.
    400: {"model": LivyMessage | ErrorResponse, "description": "Bad request"},
}
LIVY_ERRORS |= {
    status: {"model": LivyMessage, "description": description}
    for status, description in (
        (401, "Not authenticated"),
        (403, "Not allowed"),
        (404, "No such batch or session"),
        (503, "Database unavailable"),
    )
}


def livy_error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"msg": message}, status_code=status)


def livy_failure(exc: ChidoriError) -> JSONResponse:
    """A domain error as Livy answers errors."""
    return livy_error(_STATUS.get(exc.code, 500 if exc.code == "internal" else 400), exc.message)


def invalid_body(exc: ValidationError) -> InvalidRequest:
    """The first problem with a request body, as one message naming the field."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ()))
    return InvalidRequest(f"{where}: {first.get('msg')}" if where else str(first.get("msg")))
