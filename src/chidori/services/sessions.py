"""Livy interactive sessions: create, read, stop; run, read and cancel statements.

A session is a job of kind `session` (admitted, limited, shown and cancelled like any job), so
access follows the job's: whoever may see the job may read the session, and users and admins
who may see it may run statements in it or stop it. Statements wait in the store until the
relay on the server hosting the session's driver hands them over (see chidori.host.session_relay).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from chidori.domain.errors import InvalidRequest, NotFound
from chidori.domain.identity import Role
from chidori.domain.records import (
    ACTIVE_STATEMENT_STATES,
    CANCELLED,
    CANCELLING,
    ERROR,
    Job,
    Statement,
)
from chidori.domain.spec import JobSpec
from chidori.domain.states import JobState
from chidori.services.identity import Actor, IdentityService
from chidori.services.jobs import JobService
from chidori.storage.logfiles import LineWindow
from chidori.store.sessions import SESSION_KIND, SessionInfo, SessionStore, lost_output

SESSION_KINDS = ("pyspark", "sql")  # what a session or a statement may be; "shared": either
SHARED = "shared"
MAX_CODE_CHARS = 1024 * 1024


@dataclass(frozen=True)
class SessionView:
    job: Job
    info: SessionInfo
    state: str  # Livy's session state


class SessionService:
    def __init__(self, jobs: JobService, store: SessionStore, identity: IdentityService) -> None:
        self._jobs = jobs
        self._store = store
        self._identity = identity

    # ---- sessions ---------------------------------------------------------------------------

    def create(self, actor: Actor, spec: JobSpec, kind: str, proxy_user: str | None) -> SessionView:
        """Submit the session's job, then record what only sessions have."""
        if spec.kind != SESSION_KIND:
            raise InvalidRequest("a session is a job of kind 'session'")
        check_kind(kind, allow_shared=True)
        job, _ = self._jobs.submit(actor, spec)
        try:
            info = self._store.create(job.id, kind, proxy_user)
        except Exception:
            # Without its session row the job would be a driver nobody can talk to.
            self._jobs.cancel(actor, job.id)
            raise
        return SessionView(job, info, livy_state(job, info, []))

    def get(self, actor: Actor, session_id: int) -> SessionView:
        """NotFound unless `actor` may see the job and it is a session."""
        missing = NotFound(f"Session '{session_id}' not found.")  # Livy's words
        try:
            job = self._jobs.get(actor, session_id)
        except NotFound as exc:
            raise missing from exc
        info = self._store.get(session_id) if job.spec.kind == SESSION_KIND else None
        if info is None:
            raise missing
        active = self._store.list_statements(session_id, active_only=True)
        return SessionView(job, info, livy_state(job, info, active))

    def list_sessions(self, actor: Actor, offset: int, size: int) -> tuple[int, list[SessionView]]:
        total, jobs = self._livy_jobs(actor, True, offset, size)
        infos = self._store.sessions_among(job.id for job in jobs)
        views = []
        for job in jobs:
            info = infos.get(job.id) or SessionInfo(job.id, SHARED, None, None)
            active = [] if job.state.terminal else self._active(job.id)
            views.append(SessionView(job, info, livy_state(job, info, active)))
        return total, views

    def list_batches(self, actor: Actor, offset: int, size: int) -> tuple[int, list[Job]]:
        """Livy batches: jobs submitted through Livy that are not sessions."""
        return self._livy_jobs(actor, False, offset, size)

    def _livy_jobs(
        self, actor: Actor, sessions: bool, offset: int, size: int
    ) -> tuple[int, list[Job]]:
        visible = None if actor.principal.is_admin else (actor.name, actor.principal.team)
        return self._store.list_livy_jobs(sessions, visible, offset, size)

    def _active(self, session_id: int) -> list[Statement]:
        return self._store.list_statements(session_id, active_only=True)

    def stop(self, actor: Actor, session_id: int) -> None:
        self.get(actor, session_id)
        self._jobs.cancel(actor, session_id)

    def log_lines(self, actor: Actor, session_id: int, from_: int | None, size: int) -> LineWindow:
        """Livy's numbered lines of the session driver's log."""
        self.get(actor, session_id)
        return self._jobs.read_log_lines(actor, session_id, from_, size)

    # ---- statements -------------------------------------------------------------------------

    def submit(self, actor: Actor, session_id: int, code: str, kind: str | None) -> Statement:
        """Queue a statement. Accepted while the session is starting too: it runs once the
        driver is ready. A session that has ended, or is being stopped, takes none."""
        view = self.get(actor, session_id)
        actor.principal.require(Role.ADMIN, Role.USER)
        if view.job.state.terminal or view.job.cancel_requested:
            raise InvalidRequest(f"Session is in state {view.state}")
        if kind is not None:
            check_kind(kind, allow_shared=False)
        effective = kind or view.info.kind
        if effective == SHARED:
            raise InvalidRequest("Code type should be specified if session kind is shared")
        if len(code) > MAX_CODE_CHARS:
            raise InvalidRequest(f"code: at most {MAX_CODE_CHARS} characters")
        statement = self._store.add_statement(session_id, code, effective, actor.name)
        # A session is shared with the owner's team: who ran what is part of the audit trail.
        self._identity.record(
            actor,
            "statement.run",
            f"session/{session_id}/statement/{statement.number}",
            {"kind": effective, "chars": len(code)},
        )
        return statement

    def statements(self, actor: Actor, session_id: int) -> list[Statement]:
        view = self.get(actor, session_id)
        return [settled(view.job, s) for s in self._store.list_statements(session_id)]

    def statement(self, actor: Actor, session_id: int, number: int) -> Statement:
        view = self.get(actor, session_id)
        return settled(view.job, self._store.get_statement(session_id, number))

    def cancel(self, actor: Actor, session_id: int, number: int) -> Statement:
        view = self.get(actor, session_id)
        actor.principal.require(Role.ADMIN, Role.USER)
        cancelled = self._store.cancel_statement(session_id, number)
        self._identity.record(actor, "statement.cancel", f"session/{session_id}/statement/{number}")
        return settled(view.job, cancelled)


def check_kind(kind: str, allow_shared: bool) -> None:
    if kind in SESSION_KINDS or (allow_shared and kind == SHARED):
        return
    raise InvalidRequest(
        f"kind '{kind}' is not supported: Chidori's Livy sessions run pyspark and sql"
    )


def livy_state(job: Job, info: SessionInfo, active: list[Statement]) -> str:
    """Livy's session state for ours: starting until the driver of the current attempt is
    ready, then busy while a statement runs (or waits) and idle otherwise."""
    if job.state == JobState.QUEUED:
        return "not_started"
    if job.state == JobState.SUCCEEDED:
        return "success"
    if job.state == JobState.FAILED:
        return "dead"
    if job.state == JobState.CANCELLED:
        return "killed"
    if job.cancel_requested:
        return "shutting_down"
    if job.state == JobState.ADMITTED or info.ready_attempt != job.attempts:
        return "starting"
    return "busy" if active else "idle"


def settled(job: Job, statement: Statement) -> Statement:
    """A statement as seen once its session ended: one left unfinished never will finish."""
    if not job.state.terminal or statement.state not in ACTIVE_STATEMENT_STATES:
        return statement
    if statement.state == CANCELLING:
        return replace(statement, state=CANCELLED)
    reason = "the session ended before this statement completed"
    return replace(statement, state=ERROR, output=lost_output(statement.number, reason))
