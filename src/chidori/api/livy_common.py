"""What the Livy routers share: Livy's error shape (`{"msg": ...}`) and status codes, and
their OpenAPI documentation."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

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


class LivySparkRequest(BaseModel):
    """The fields Livy's batch and session requests share (driver, executors, files, conf)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    proxy_user: str | None = Field(None, alias="proxyUser", max_length=128)
    jars: list[str] = Field(default_factory=list)
    py_files: list[str] = Field(default_factory=list, alias="pyFiles")
    files: list[str] = Field(default_factory=list)
    driver_memory: str | None = Field(None, alias="driverMemory")
    driver_cores: int | None = Field(None, alias="driverCores")
    executor_memory: str | None = Field(None, alias="executorMemory")
    executor_cores: int | None = Field(None, alias="executorCores")
    num_executors: int | None = Field(None, alias="numExecutors")
    archives: list[str] = Field(default_factory=list)
    queue: str | None = None
    name: str | None = None
    conf: dict[str, Any] = Field(default_factory=dict)

    def job_fields(self) -> dict[str, Any]:
        """JobSpec fields (unset ones left out, so the spec's defaults apply)."""
        fields: dict[str, Any] = {
            "jars": self.jars,
            "py_files": self.py_files,
            "files": self.files,
            "archives": self.archives,
            "conf": self.conf,
            "name": self.name,
            "queue": self.queue,
            "driver_memory": self.driver_memory,
            "driver_cores": self.driver_cores,
            "executor_memory": self.executor_memory,
            "executor_cores": self.executor_cores,
            "executor_instances": self.num_executors,
            "labels": {"submitted-through": "livy"},
        }
        return {k: v for k, v in fields.items() if v not in (None, [], {})}


def log_window(owner_id: int, lines: list[str], from_: int | None, size: int) -> JSONResponse:
    """Livy's log answer: lines `from_` on (default: the last `size`)."""
    start = max(0, len(lines) - size) if from_ is None else from_
    return JSONResponse(
        {"id": owner_id, "from": start, "total": len(lines), "log": lines[start : start + size]}
    )


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
