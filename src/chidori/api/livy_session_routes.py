"""The Livy REST API for interactive sessions, at the server's root, so Livy clients (pylivy,
sparkmagic, Airflow) work unchanged: `POST/GET /sessions`, `GET/DELETE /sessions/{id}`,
`GET /sessions/{id}/state`, `GET /sessions/{id}/log`, `POST/GET /sessions/{id}/statements`,
`GET /sessions/{id}/statements/{sid}`, `POST /sessions/{id}/statements/{sid}/cancel`, and
`GET /version` (clients ask it which session kinds the server knows).

Shapes and status codes follow Livy's; errors answer `{"msg": ...}`, malformed JSON included
(these routes read their bodies themselves, and are `LivyRoute`s: see `livy_errors.py`). A
session is a Chidori job of kind `session`.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from chidori.api.deps import current_actor
from chidori.api.livy_common import (
    LIVY_ERRORS,
    MAX_WINDOW,
    LivyMessage,
    LivySparkRequest,
    job_spec,
    line_window,
    parse_body,
)
from chidori.api.livy_errors import LivyRoute
from chidori.api.schemas import error_responses
from chidori.domain.errors import InvalidRequest
from chidori.domain.records import AVAILABLE, CANCELLED, ERROR, Statement
from chidori.domain.spec import SESSION_APPLICATION, JobSpec
from chidori.services.identity import Actor
from chidori.services.sessions import SHARED, SessionService, SessionView
from chidori.web.job_views import MAX_ID

LIVY_VERSION = "0.8.0-incubating"  # the Livy REST API these routes follow
SessionId = Annotated[int, Path(ge=1, le=MAX_ID)]
StatementId = Annotated[int, Path(ge=0, le=2**31 - 1)]
SESSION_LOG_LINES = 10  # Livy shows the last ten log lines in a session's JSON


class LivySessionRequest(LivySparkRequest):
    """Livy's CreateInteractiveRequest."""

    kind: str = SHARED
    heartbeat_timeout: int | None = Field(
        None, alias="heartbeatTimeoutInSecond", ge=0, le=365 * 24 * 3600
    )

    def spec(self) -> JobSpec:
        fields = self.job_fields() | {"kind": "session", "application": SESSION_APPLICATION}
        if self.heartbeat_timeout:
            # The driver's idle timeout: a session nobody uses frees its slot.
            fields["args"] = [str(self.heartbeat_timeout)]
        return job_spec(fields)


class LivyStatementRequest(BaseModel):
    """Livy's ExecuteRequest."""

    model_config = ConfigDict(extra="ignore")

    code: str
    kind: str | None = None


def session_json(view: SessionView, log: list[str]) -> dict[str, Any]:
    job = view.job
    return {
        "id": job.id,
        "name": job.spec.name,
        "appId": job.spark_app_id,
        "owner": job.owner,
        "proxyUser": view.info.proxy_user,
        "state": view.state,
        "kind": view.info.kind,
        "appInfo": {"driverLogUrl": None, "sparkUiUrl": None},
        "log": log,
    }


def _millis(statement: Statement, which: str) -> int:
    moment = statement.started_at if which == "started" else statement.completed_at
    return 0 if moment is None else int(moment.timestamp() * 1000)


def statement_json(statement: Statement) -> dict[str, Any]:
    finished = statement.state in (AVAILABLE, CANCELLED, ERROR)
    return {
        "id": statement.number,
        "code": statement.code,
        "state": statement.state,
        "output": statement.output,
        "progress": 1.0 if finished else 0.0,
        "started": _millis(statement, "started"),
        "completed": _millis(statement, "completed"),
    }


def _body_schema(model: type[BaseModel]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": model.model_json_schema(by_alias=True)}},
        }
    }


async def _json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object; Livy's 400 otherwise (read here so that malformed JSON is
    answered in Livy's shape too)."""
    try:
        body = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"the body is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise InvalidRequest("the body is nested too deeply") from exc
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    return body


def build_livy_session_router(sessions: SessionService) -> APIRouter:
    router = APIRouter(
        tags=["livy"],
        responses={**LIVY_ERRORS, **error_responses(422)},
        route_class=LivyRoute,
    )

    def who(request: Request, authorization: str | None) -> Actor:
        return current_actor(request, authorization)

    def tail(actor: Actor, session_id: int, lines: int) -> list[str]:
        return sessions.log_lines(actor, session_id, None, lines).lines

    @router.get("/version", response_model=dict[str, Any])
    def version(
        request: Request, authorization: Annotated[str | None, Header()] = None
    ) -> JSONResponse:
        """Livy: the server's version (clients pick session kinds by it)."""
        who(request, authorization)
        return JSONResponse({"version": LIVY_VERSION})

    @router.post(
        "/sessions",
        status_code=201,
        response_model=dict[str, Any],
        openapi_extra=_body_schema(LivySessionRequest),
    )
    async def create_session(
        request: Request, authorization: Annotated[str | None, Header()] = None
    ) -> JSONResponse:
        """Livy: start an interactive session (201 with the session, `starting`)."""
        actor = await run_in_threadpool(who, request, authorization)
        body = await _json_body(request)

        def create() -> JSONResponse:
            parsed = parse_body(LivySessionRequest, body)
            view = sessions.create(actor, parsed.spec(), parsed.kind, parsed.proxy_user)
            headers = {"Location": f"/sessions/{view.job.id}"}
            return JSONResponse(session_json(view, []), status_code=201, headers=headers)

        return await run_in_threadpool(create)

    @router.get("/sessions", response_model=dict[str, Any])
    def list_sessions(
        request: Request,
        from_: Annotated[int, Query(alias="from", ge=0, le=MAX_WINDOW)] = 0,
        size: Annotated[int, Query(ge=1, le=MAX_WINDOW)] = 100,
        authorization: Annotated[str | None, Header()] = None,
    ) -> JSONResponse:
        """Livy: `{"from", "total", "sessions": [session]}` (newest first)."""
        total, views = sessions.list_sessions(who(request, authorization), from_, size)
        found = [session_json(view, []) for view in views]
        return JSONResponse({"from": from_, "total": total, "sessions": found})

    @router.get("/sessions/{session_id}", response_model=dict[str, Any])
    def get_session(
        request: Request,
        session_id: SessionId,
        authorization: Annotated[str | None, Header()] = None,
    ) -> JSONResponse:
        actor = who(request, authorization)
        view = sessions.get(actor, session_id)
        return JSONResponse(session_json(view, tail(actor, session_id, SESSION_LOG_LINES)))

    @router.get("/sessions/{session_id}/state", response_model=dict[str, Any])
    def session_state(
        request: Request,
        session_id: SessionId,
        authorization: Annotated[str | None, Header()] = None,
    ) -> JSONResponse:
        view = sessions.get(who(request, authorization), session_id)
        return JSONResponse({"id": view.job.id, "state": view.state})

    @router.get("/sessions/{session_id}/log", response_model=dict[str, Any])
    def session_log(
        request: Request,
        session_id: SessionId,
        from_: Annotated[int | None, Query(alias="from", ge=0, le=2**31)] = None,
        size: Annotated[int, Query(ge=0, le=100_000)] = 100,
        authorization: Annotated[str | None, Header()] = None,
    ) -> JSONResponse:
        """Livy: lines `from` (default: the last `size`) — `{"id", "from", "total", "log"}`."""
        window = sessions.log_lines(who(request, authorization), session_id, from_, size)
        return line_window(session_id, window)

    @router.delete("/sessions/{session_id}", response_model=LivyMessage)
    def delete_session(
        request: Request,
        session_id: SessionId,
        authorization: Annotated[str | None, Header()] = None,
    ) -> JSONResponse:
        """Livy: stop the session — `{"msg": "deleted"}`."""
        sessions.stop(who(request, authorization), session_id)
        return JSONResponse({"msg": "deleted"})

    @router.post(
        "/sessions/{session_id}/statements",
        status_code=201,
        response_model=dict[str, Any],
        openapi_extra=_body_schema(LivyStatementRequest),
    )
    async def run_statement(
        request: Request,
        session_id: SessionId,
        authorization: Annotated[str | None, Header()] = None,
    ) -> JSONResponse:
        """Livy: run code (`{"code", "kind"}`) — 201 with the statement, `waiting`."""
        actor = await run_in_threadpool(who, request, authorization)
        body = await _json_body(request)

        def submit() -> JSONResponse:
            parsed = parse_body(LivyStatementRequest, body)
            statement = sessions.submit(actor, session_id, parsed.code, parsed.kind)
            location = f"/sessions/{session_id}/statements/{statement.number}"
            return JSONResponse(
                statement_json(statement), status_code=201, headers={"Location": location}
            )

        return await run_in_threadpool(submit)

    @router.get("/sessions/{session_id}/statements", response_model=dict[str, Any])
    def list_statements(
        request: Request,
        session_id: SessionId,
        from_: Annotated[int, Query(alias="from", ge=0, le=2**31)] = 0,
        size: Annotated[int | None, Query(ge=0, le=2**31)] = None,
        order: Annotated[str | None, Query(max_length=8)] = None,
        authorization: Annotated[str | None, Header()] = None,
    ) -> JSONResponse:
        """Livy: `{"total_statements", "statements"}` (`order=desc` for newest first)."""
        found = sessions.statements(who(request, authorization), session_id)
        if order is not None and order.strip().lower() == "desc":
            found.reverse()
        end = None if size is None else from_ + size
        return JSONResponse(
            {
                "total_statements": len(found),
                "statements": [statement_json(s) for s in found[from_:end]],
            }
        )

    @router.get("/sessions/{session_id}/statements/{statement_id}", response_model=dict[str, Any])
    def get_statement(
        request: Request,
        session_id: SessionId,
        statement_id: StatementId,
        authorization: Annotated[str | None, Header()] = None,
    ) -> JSONResponse:
        actor = who(request, authorization)
        return JSONResponse(statement_json(sessions.statement(actor, session_id, statement_id)))

    @router.post(
        "/sessions/{session_id}/statements/{statement_id}/cancel", response_model=LivyMessage
    )
    def cancel_statement(
        request: Request,
        session_id: SessionId,
        statement_id: StatementId,
        authorization: Annotated[str | None, Header()] = None,
    ) -> JSONResponse:
        """Livy: cancel a statement — `{"msg": "canceled"}`. Its Spark jobs are cancelled; code
        busy in pure Python runs on until it ends."""
        sessions.cancel(who(request, authorization), session_id, statement_id)
        return JSONResponse({"msg": "canceled"})

    return router
