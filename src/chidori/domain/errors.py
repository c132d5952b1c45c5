"""Domain errors. Each boundary translates its own failures into these; each protocol the
API serves (REST, Livy, Spark REST) maps them in its own table, through the one lookup in
`chidori.api.errors` (exception handlers; no route catches them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self


@dataclass(frozen=True)
class FieldError:
    """One bad field of a request: a dotted path and why it is bad."""

    field: str
    message: str


class ChidoriError(Exception):
    """Base of every error Chidori raises on purpose."""

    code = "error"

    def __init__(self, message: str, fields: list[FieldError] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields = list(fields or [])

    @classmethod
    def for_field(cls, name: str, message: str) -> Self:
        return cls(f"{name}: {message}", [FieldError(name, message)])


class InvalidRequest(ChidoriError):
    """The request names something invalid; `fields` says which fields and why."""

    code = "invalid_request"


class NotFound(ChidoriError):
    code = "not_found"


class Conflict(ChidoriError):
    code = "conflict"


class Unauthenticated(ChidoriError):
    code = "unauthenticated"


class Forbidden(ChidoriError):
    code = "forbidden"


class PayloadTooLarge(ChidoriError):
    code = "payload_too_large"


class UnsupportedMediaType(ChidoriError):
    """A body in a format the route does not take (e.g. a form where JSON is expected)."""

    code = "unsupported_media_type"


class RateLimited(ChidoriError):
    code = "rate_limited"

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(ChidoriError):
    """Something a request needs cannot serve it now (the database, the dispatch broker,
    shared storage, the sandbox); retry later. Every protocol answers it as its "service
    unavailable"."""

    code = "unavailable"


class StoreUnavailable(Unavailable):
    """The database cannot be reached or answered with an error we cannot act on."""

    code = "store_unavailable"


class BackendError(ChidoriError):
    """A backend could not start or stop a driver."""

    code = "backend_error"
