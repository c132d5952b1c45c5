"""What the Livy routers share: their requests' common fields, reading a body into them, and
their OpenAPI documentation. Their error answers are in `livy_errors.py`."""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from chidori.api.schemas import ErrorResponse
from chidori.domain.errors import InvalidRequest
from chidori.domain.records import SUBMITTED_THROUGH
from chidori.domain.spec import JobSpec
from chidori.storage.logfiles import LineWindow

Model = TypeVar("Model", bound=BaseModel)
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


# Conf keys a Livy request may carry that are job spec fields in Chidori.
_CONF_FIELDS = {
    "spark.driver.memory": "driver_memory",
    "spark.driver.cores": "driver_cores",
    "spark.executor.memory": "executor_memory",
    "spark.executor.cores": "executor_cores",
    "spark.executor.instances": "executor_instances",
}
_CONF_LISTS = {
    "spark.jars": "jars",
    "spark.submit.pyFiles": "py_files",
    "spark.files": "files",
    "spark.archives": "archives",
}


def _entries(value: Any) -> list[str]:
    """A list conf value: comma-separated text (as Spark writes it) or a JSON list."""
    items = value if isinstance(value, list) else str(value).split(",")
    return [str(item).strip() for item in items if str(item).strip()]


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
        """JobSpec fields (unset ones left out, so the spec's defaults apply). Conf keys Livy
        reads as these fields (spark.executor.memory, spark.jars, ...) become them: the spec
        refuses them in conf, so the caps, admission and the app roots see every one."""
        conf = dict(self.conf)
        mapped = {field: conf.pop(key) for key, field in _CONF_FIELDS.items() if key in conf}
        listed = {
            field: _entries(conf.pop(key)) for key, field in _CONF_LISTS.items() if key in conf
        }
        fields: dict[str, Any] = {
            "jars": self.jars + listed.get("jars", []),
            "py_files": self.py_files + listed.get("py_files", []),
            "files": self.files + listed.get("files", []),
            "archives": self.archives + listed.get("archives", []),
            "conf": conf,
            "name": self.name,
            "queue": self.queue,
            "driver_memory": self.driver_memory,
            "driver_cores": self.driver_cores,
            "executor_memory": self.executor_memory,
            "executor_cores": self.executor_cores,
            "executor_instances": self.num_executors,
            "labels": {SUBMITTED_THROUGH: "livy"},
        }
        # As in Livy, a request field wins over the same setting in conf.
        fields |= {k: v for k, v in mapped.items() if fields.get(k) is None}
        return {k: v for k, v in fields.items() if v not in (None, [], {})}


def line_window(owner_id: int, window: LineWindow) -> JSONResponse:
    """Livy's log answer from a window of numbered lines (chidori.storage.logfiles)."""
    return JSONResponse(
        {"id": owner_id, "from": window.start, "total": window.total, "log": window.lines}
    )


def parse_body(model: type[Model], body: Any) -> Model:
    """A request body as `model`; InvalidRequest (Livy's 400) naming the first bad field."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise invalid_body(exc) from exc


def job_spec(fields: dict[str, Any]) -> JobSpec:
    """The job spec a Livy request stands for; InvalidRequest naming the first bad field."""
    return parse_body(JobSpec, fields)


def invalid_body(exc: ValidationError) -> InvalidRequest:
    """The first problem with a request body, as one message naming the field."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ()))
    return InvalidRequest(f"{where}: {first.get('msg')}" if where else str(first.get("msg")))
