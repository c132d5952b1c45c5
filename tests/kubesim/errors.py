"""Errors of the fake API server: what it answers as `Status` objects.

The reasons, codes and message wording follow the real API server's `apimachinery` errors
(NotFound 404, AlreadyExists / Conflict 409, Invalid 422 with `details.causes`, BadRequest
400, Gone 410 as reason Expired, ...); `details.kind` is the resource (plural) for NotFound,
AlreadyExists and Conflict, and the kind for Invalid, as there.
"""

from __future__ import annotations

from typing import Any

from tests.kubesim.resources import Resource

Obj = dict[str, Any]


class ApiError(Exception):
    """An error the API server answers with a `Status` object."""

    def __init__(self, code: int, reason: str, message: str, details: Obj | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details

    def status(self) -> Obj:
        body: Obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure"}
        body.update(message=self.message, reason=self.reason, code=self.code)
        if self.details is not None:
            body["details"] = self.details
        return body


def not_found(r: Resource, name: str) -> ApiError:
    return ApiError(
        404, "NotFound", f'{r.plural} "{name}" not found', {"name": name, "kind": r.plural}
    )


def conflict(r: Resource, name: str, why: str) -> ApiError:
    message = f'Operation cannot be fulfilled on {r.plural} "{name}": {why}'
    return ApiError(409, "Conflict", message, {"name": name, "kind": r.plural})


def invalid(r: Resource, name: str, field: str, value: Any, why: str) -> ApiError:
    message = f'{r.kind} "{name}" is invalid: {field}: Invalid value: "{value}": {why}'
    cause = {"reason": "FieldValueInvalid", "message": f'Invalid value: "{value}": {why}'}
    cause["field"] = field
    return ApiError(422, "Invalid", message, {"name": name, "kind": r.kind, "causes": [cause]})


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


STALE = (
    "the object has been modified; please apply your changes to the latest version and try again"
)
