"""Each protocol's error table (REST, Livy, Spark REST) answers every error class Chidori
raises with a status of its own, and each protocol's handlers answer in that protocol's shape
only, even where two protocols share one application (REST and Livy)."""

from __future__ import annotations

import asyncio
import importlib
import pkgutil
from collections.abc import Iterator
from typing import Annotated

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Path

import chidori
from chidori.api.errors import (
    BASE_STATUS,
    REST_STATUS,
    StatusTable,
    install_error_handlers,
    protocol_table,
    table_entry,
)
from chidori.api.livy_errors import (
    LIVY_OVERRIDES,
    LIVY_STATUS,
    LivyBatchRoute,
    LivyRoute,
    install_livy_error_handler,
)
from chidori.api.spark_rest_errors import (
    SPARK_REST_OVERRIDES,
    SPARK_REST_STATUS,
    install_spark_rest_error_handlers,
)
from chidori.domain.errors import (
    ChidoriError,
    Conflict,
    FieldError,
    InvalidRequest,
    NotFound,
    RateLimited,
    StoreUnavailable,
    Unavailable,
)

TABLES: dict[str, StatusTable] = {
    "rest": REST_STATUS,
    "livy": LIVY_STATUS,
    "spark-rest": SPARK_REST_STATUS,
}
# What each protocol states itself; everything else it answers from BASE_STATUS.
OVERRIDES: dict[str, StatusTable] = {
    "rest": {},
    "livy": LIVY_OVERRIDES,
    "spark-rest": SPARK_REST_OVERRIDES,
}
# The errors that are the server's, not the caller's: the only 5xx answers, in every protocol.
SERVER_SIDE = {
    "Unavailable": 503,
    "StoreUnavailable": 503,
    "QueueUnavailable": 503,
    "BlobError": 503,
    "IsolationUnavailable": 503,
    "RemoteUnavailable": 503,
    "QuotaRefused": 503,
    "BackendError": 502,
    "ConfigError": 500,
}


def _subclasses(cls: type[ChidoriError]) -> Iterator[type[ChidoriError]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def every_error_class() -> list[type[ChidoriError]]:
    """Every ChidoriError subclass defined in Chidori (each module imported first, so that
    none is missed because nothing imported it yet)."""
    for module in pkgutil.walk_packages(chidori.__path__, "chidori."):
        if module.name.endswith("__main__") or module.name.startswith("chidori.store.migrations"):
            continue
        importlib.import_module(module.name)
    found = {cls for cls in _subclasses(ChidoriError) if cls.__module__.startswith("chidori.")}
    return sorted(found, key=lambda cls: f"{cls.__module__}.{cls.__qualname__}")


ERROR_CLASSES = every_error_class()


def test_the_walk_finds_the_errors_outside_the_domain_too() -> None:
    names = {cls.__name__ for cls in ERROR_CLASSES}
    assert {"NotFound", "StoreUnavailable", "QueueUnavailable", "BlobError"} <= names
    assert set(SERVER_SIDE) <= names


@pytest.mark.parametrize("protocol", sorted(TABLES))
@pytest.mark.parametrize("error", ERROR_CLASSES, ids=lambda cls: cls.__name__)
def test_every_error_class_has_an_entry_in_every_protocols_table(
    protocol: str, error: type[ChidoriError]
) -> None:
    table = TABLES[protocol]
    entry = table_entry(table, error)
    if issubclass(error, Unavailable):
        # Everything that says "retry later" answers as its base class: one entry.
        assert entry is Unavailable, f"{protocol}: {error.__name__} has an entry of its own"
    # Falling through to ChidoriError's own entry would mean nobody decided this error's status.
    assert entry is not ChidoriError, f"{protocol}: no entry for {error.__name__}"
    status = table[entry]
    assert 400 <= status <= 599
    if status >= 500:
        assert SERVER_SIDE.get(error.__name__) == status, f"{protocol}: {error.__name__}"
    else:
        assert error.__name__ not in SERVER_SIDE, f"{protocol}: {error.__name__} is the server's"


def test_the_intentional_server_side_statuses() -> None:
    for protocol, table in TABLES.items():
        assert table[table_entry(table, StoreUnavailable)] == 503, protocol
        assert table[ChidoriError] == 400, protocol  # an error without a class of its own
    assert REST_STATUS[InvalidRequest] == 422
    assert LIVY_STATUS[InvalidRequest] == SPARK_REST_STATUS[InvalidRequest] == 400


@pytest.mark.parametrize("protocol", sorted(TABLES))
def test_each_table_is_the_shared_base_with_the_protocols_own_overrides(protocol: str) -> None:
    table, overrides = TABLES[protocol], OVERRIDES[protocol]
    assert dict(table) == {**BASE_STATUS, **overrides}
    # An override says something the base does not: a row equal to the base's is a repeat.
    repeats = [cls.__name__ for cls, status in overrides.items() if BASE_STATUS[cls] == status]
    assert not repeats, f"{protocol} repeats the base for {repeats}"


def test_an_override_names_a_class_the_base_lists() -> None:
    class Unlisted(ChidoriError):
        pass

    with pytest.raises(ValueError, match="Unlisted"):
        protocol_table({Unlisted: 400})


def test_a_subclass_answers_as_its_nearest_listed_parent() -> None:
    class Gone(NotFound):
        pass

    for table in TABLES.values():
        assert table_entry(table, Gone) is NotFound


# ---- the handlers, on one app as in the server: REST and Livy side by side ---------------------


def get(app: FastAPI, path: str) -> httpx.Response:
    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get(path)

    return asyncio.run(call())


def _shared_app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    install_livy_error_handler(app)
    rest = APIRouter(prefix="/api/v1")
    livy = APIRouter(route_class=LivyRoute)
    batches = APIRouter(route_class=LivyBatchRoute)

    @rest.get("/things/{thing_id}")
    def rest_thing(thing_id: int) -> None:
        raise NotFound(f"thing {thing_id} not found")

    @rest.get("/busy")
    def rest_busy() -> None:
        raise RateLimited("slow down", retry_after=2.4)

    @livy.get("/sessions/{session_id}")
    def livy_session(session_id: int) -> None:
        raise NotFound(f"no session {session_id}")

    @livy.get("/conflict")
    def livy_conflict() -> None:
        raise Conflict("too many statements submitted at once; try again")

    @batches.get("/batches/{batch_id}")
    def livy_batch(batch_id: Annotated[int, Path(ge=1)]) -> None:
        raise NotFound(f"job {batch_id} not found")

    app.include_router(rest)
    app.include_router(livy)
    app.include_router(batches)
    return app


def test_rest_and_livy_answer_in_their_own_shapes_on_one_app() -> None:
    app = _shared_app()
    rest = get(app, "/api/v1/things/7")
    assert rest.status_code == 404
    assert rest.json() == {
        "error": {"code": "not_found", "message": "thing 7 not found", "fields": []}
    }
    busy = get(app, "/api/v1/busy")
    assert busy.status_code == 429 and busy.headers["retry-after"] == "2"
    livy = get(app, "/sessions/7")
    assert livy.status_code == 404 and livy.json() == {"msg": "no session 7"}
    assert get(app, "/conflict").status_code == 400
    # Livy's words for any batch it does not have, whatever the service said.
    batch = get(app, "/batches/0042")
    assert batch.status_code == 404 and batch.json() == {"msg": "Session '42' not found."}
    # Request validation happens before the route: it keeps the app's (REST) answer.
    invalid = get(app, "/batches/0")
    assert invalid.status_code == 422 and "error" in invalid.json()
    # Unknown paths are the app's too.
    assert get(app, "/nowhere").json()["error"]["code"] == "not_found"


def test_spark_rest_answers_error_responses_naming_the_requests_fields() -> None:
    app = FastAPI()
    install_spark_rest_error_handlers(app, "4.3.0")

    @app.get("/invalid")
    def invalid() -> None:
        raise InvalidRequest("driver_memory: too big", [FieldError("driver_memory", "too big")])

    @app.get("/down")
    def down() -> None:
        raise StoreUnavailable("database unavailable")

    answer = get(app, "/invalid")
    assert answer.status_code == 400
    assert answer.json() == {
        "action": "ErrorResponse",
        "serverSparkVersion": "4.3.0",
        "message": "sparkProperties.spark.driver.memory: too big",
    }
    assert get(app, "/down").status_code == 503
