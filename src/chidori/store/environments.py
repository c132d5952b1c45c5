"""Per-job Python environments in the store: which jobs wait for one, who prepares it, the
built environments with their use counts, and a held job's release or failure.

A job with requirements is stored QUEUED with `not_before = PREPARING_HOLD` (see
`JobRepository._row_values`), so the admit step does not see it. A server claims its
preparation (a `job_environments` row, one per job: the primary key decides between
replicas), resolves and builds, then releases the hold (`ready`) or fails the job, each a
compare-and-set on the job still QUEUED and held. A claim whose server stopped renewing it
(`stale_after`; preparing servers renew theirs) may be taken over.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Connection, CursorResult, Result, Table, delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from chidori.domain.environments import (
    PREPARING_HOLD,
    BaseEnvironment,
    Environment,
    EnvState,
    JobEnvironment,
)
from chidori.domain.errors import Conflict
from chidori.domain.states import JobState
from chidori.store.database import Database
from chidori.store.environment_models import (
    BaseEnvironmentRow,
    EnvironmentRow,
    JobEnvironmentRow,
)
from chidori.store.statements import EVENTS, JOBS

ENVS = cast(Table, EnvironmentRow.__table__)
BASES = cast(Table, BaseEnvironmentRow.__table__)
JOB_ENVS = cast(Table, JobEnvironmentRow.__table__)
# A job uses its environment until it ends (a queued retry will need it again).
_UNFINISHED = [JobState.QUEUED.value, JobState.ADMITTED.value, JobState.RUNNING.value]
_HELD = (JOBS.c.state == JobState.QUEUED.value, JOBS.c.not_before == PREPARING_HOLD)


def _changed(result: Result[Any]) -> int:
    """Rows an UPDATE or DELETE changed."""
    return int(cast(CursorResult[Any], result).rowcount)


def _base(row: BaseEnvironmentRow) -> BaseEnvironment:
    return BaseEnvironment(
        row.name, list(row.requirements), row.lock, row.env_key, row.created_by, row.created_at
    )


def _job_environment(row: JobEnvironmentRow) -> JobEnvironment:
    return JobEnvironment(
        row.job_id, EnvState(row.state), row.server_id, row.env_key, row.lock, row.log
    )


class EnvironmentRepository:
    def __init__(self, db: Database, stale_after: timedelta = timedelta(minutes=2)) -> None:
        """`stale_after`: how long a claim stands without a word from its server (a
        preparing server renews its claims every `stale_after / 4`)."""
        self._db = db
        self._stale_after = stale_after

    # ---- preparation ---------------------------------------------------------------------

    def held_jobs(self, limit: int = 16) -> list[tuple[int, list[str], str | None]]:
        """(job id, requirements, base environment) of held jobs nobody prepares (or whose
        claim went stale), oldest first."""
        stale = self._db.now() - self._stale_after
        query = (
            select(JOBS.c.id, JOBS.c.spec)
            .outerjoin(JOB_ENVS, JOB_ENVS.c.job_id == JOBS.c.id)
            .where(*_HELD)
            .where(
                (JOB_ENVS.c.job_id.is_(None))
                | ((JOB_ENVS.c.state == EnvState.PREPARING.value) & (JOB_ENVS.c.updated_at < stale))
            )
            .order_by(JOBS.c.id)
            .limit(limit)
        )
        with self._db.reading() as session:
            rows = session.execute(query).all()
        return [
            (job_id, list(spec.get("requirements") or []), spec.get("environment"))
            for job_id, spec in rows
        ]

    def claim(self, job_id: int, server_id: str) -> bool:
        """Take the preparation of a held job. False if another server has it."""
        now = self._db.now()
        try:
            with self._db.writing() as session:
                session.execute(
                    insert(JOB_ENVS).values(
                        job_id=job_id,
                        state=EnvState.PREPARING.value,
                        server_id=server_id,
                        updated_at=now,
                    )
                )
            return True
        except IntegrityError:
            pass
        with self._db.writing() as session:
            taken = session.execute(
                update(JOB_ENVS)
                .where(
                    JOB_ENVS.c.job_id == job_id,
                    JOB_ENVS.c.state == EnvState.PREPARING.value,
                    JOB_ENVS.c.updated_at < now - self._stale_after,
                )
                .values(server_id=server_id, updated_at=now)
            )
            return _changed(taken) == 1

    def renew(self, job_ids: list[int], server_id: str) -> None:
        """Keep this server's claims on jobs it is still preparing from going stale."""
        if not job_ids:
            return
        with self._db.writing() as session:
            session.execute(
                update(JOB_ENVS)
                .where(
                    JOB_ENVS.c.job_id.in_(job_ids),
                    JOB_ENVS.c.server_id == server_id,
                    JOB_ENVS.c.state == EnvState.PREPARING.value,
                )
                .values(updated_at=self._db.now())
            )

    def drop_claims(self, server_ids: list[str] | None = None) -> int:
        """Forget the preparing claims of servers that are gone (None: of every server, for
        a server starting on SQLite, which no other server can share), so their held jobs are
        prepared again at once. Returns how many."""
        query = delete(JOB_ENVS).where(JOB_ENVS.c.state == EnvState.PREPARING.value)
        if server_ids is not None:
            if not server_ids:
                return 0
            query = query.where(JOB_ENVS.c.server_id.in_(server_ids))
        with self._db.writing() as session:
            return _changed(session.execute(query))

    def release(
        self,
        job_id: int,
        server_id: str,
        environment: Environment,
        lock: str,
        log: str,
        note: str,
    ) -> bool:
        """The job's environment is ready: record it (and the environment, new or used again)
        and let admission see the job. False if the job is no longer held (cancelled) or the
        claim is another server's now."""
        now = self._db.now()
        with self._db.writing() as session:
            mine = session.execute(
                update(JOB_ENVS)
                .where(JOB_ENVS.c.job_id == job_id, JOB_ENVS.c.server_id == server_id)
                .values(
                    state=EnvState.READY.value,
                    env_key=environment.key,
                    lock=lock,
                    log=log,
                    updated_at=now,
                )
            )
            if _changed(mine) != 1:
                return False
            self._record_use(session.connection(), environment, now)
            released = session.execute(
                update(JOBS)
                .where(JOBS.c.id == job_id, *_HELD)
                .values(not_before=None, wait_reason=None, updated_at=now)
            )
            if _changed(released) != 1:
                return False
            session.execute(
                insert(EVENTS).values(
                    job_id=job_id,
                    attempt=None,
                    time=now,
                    type="environment",
                    state=None,
                    actor=server_id,
                    reason=note,
                )
            )
        self._db.notify_change([job_id])
        return True

    def fail(self, job_id: int, server_id: str, reason: str, log: str) -> bool:
        """The job's requirements cannot be resolved or built: it fails, QUEUED -> FAILED,
        before it ever takes a slot. False if it was no longer held."""
        now = self._db.now()
        with self._db.writing() as session:
            session.execute(
                update(JOB_ENVS)
                .where(JOB_ENVS.c.job_id == job_id, JOB_ENVS.c.server_id == server_id)
                .values(state=EnvState.FAILED.value, log=log, updated_at=now)
            )
            ended = session.execute(
                update(JOBS)
                .where(JOBS.c.id == job_id, *_HELD)
                .values(
                    state=JobState.FAILED.value,
                    reason=reason,
                    not_before=None,
                    wait_reason=None,
                    updated_at=now,
                    finished_at=now,
                )
            )
            if _changed(ended) != 1:
                return False
            session.execute(
                insert(EVENTS).values(
                    job_id=job_id,
                    attempt=None,
                    time=now,
                    type="state",
                    state=JobState.FAILED.value,
                    actor=server_id,
                    reason=reason,
                )
            )
        self._db.notify_change([job_id])
        return True

    def _record_use(self, conn: Connection, environment: Environment, now: datetime) -> None:
        """Insert the environment's row, or mark it used now (an upsert: two replicas may
        record the same environment at once)."""
        values = {
            "key": environment.key,
            "python": environment.python,
            "platform": environment.platform,
            "packages": environment.packages,
            "size_bytes": environment.size_bytes,
            "build_seconds": environment.build_seconds,
            "built_by": environment.built_by,
            "created_at": now,
            "last_used_at": now,
        }
        dialect_insert = postgresql_insert if self._db.dialect == "postgresql" else sqlite_insert
        upsert = dialect_insert(ENVS).values(values)
        conn.execute(
            upsert.on_conflict_do_update(index_elements=[ENVS.c.key], set_={"last_used_at": now})
        )

    # ---- reads -----------------------------------------------------------------------------

    def now(self) -> datetime:
        return self._db.now()

    @property
    def stale_after(self) -> timedelta:
        return self._stale_after

    def has_environment(self, key: str) -> bool:
        with self._db.reading() as session:
            return session.get(EnvironmentRow, key) is not None

    def for_job(self, job_id: int) -> JobEnvironment | None:
        with self._db.reading() as session:
            row = session.get(JobEnvironmentRow, job_id)
            return None if row is None else _job_environment(row)

    def for_jobs(self, job_ids: list[int]) -> dict[int, JobEnvironment]:
        if not job_ids:
            return {}
        with self._db.reading() as session:
            rows = session.scalars(
                select(JobEnvironmentRow).where(JobEnvironmentRow.job_id.in_(job_ids))
            )
            return {row.job_id: _job_environment(row) for row in rows}

    def environments(self) -> list[Environment]:
        """Every built environment, least recently used first, with its use count."""
        uses = self._use_counts()
        with self._db.reading() as session:
            rows = session.scalars(
                select(EnvironmentRow).order_by(EnvironmentRow.last_used_at, EnvironmentRow.key)
            )
            return [
                Environment(
                    row.key,
                    row.python,
                    row.platform,
                    dict(row.packages),
                    row.size_bytes,
                    row.build_seconds,
                    row.built_by,
                    row.created_at,
                    row.last_used_at,
                    uses.get(row.key, 0),
                )
                for row in rows
            ]

    def _use_counts(self, key: str | None = None) -> Mapping[str, int]:
        query = (
            select(JOB_ENVS.c.env_key, func.count())
            .join(JOBS, JOBS.c.id == JOB_ENVS.c.job_id)
            .where(JOB_ENVS.c.env_key.is_not(None), JOBS.c.state.in_(_UNFINISHED))
            .group_by(JOB_ENVS.c.env_key)
        )
        if key is not None:
            query = query.where(JOB_ENVS.c.env_key == key)
        with self._db.reading() as session:
            counts = {k: n for k, n in session.execute(query).all()}
            for base_key in session.scalars(select(BASES.c.env_key)):
                counts[base_key] = counts.get(base_key, 0) + 1  # a base keeps it in use
            return counts

    def forget_unused(self, key: str) -> bool:
        """Delete an environment's row if no unfinished job uses it (checked in the same
        transaction). True: its folder may go."""
        with self._db.writing() as session:
            in_use = session.execute(
                select(func.count())
                .select_from(JOB_ENVS.join(JOBS, JOBS.c.id == JOB_ENVS.c.job_id))
                .where(JOB_ENVS.c.env_key == key, JOBS.c.state.in_(_UNFINISHED))
            ).scalar_one()
            kept = session.execute(select(BASES.c.name).where(BASES.c.env_key == key)).first()
            if in_use or kept is not None:
                return False
            session.execute(delete(ENVS).where(ENVS.c.key == key))
            return True

    # ---- base environments -------------------------------------------------------------------

    def bases(self) -> list[BaseEnvironment]:
        with self._db.reading() as session:
            rows = session.scalars(select(BaseEnvironmentRow).order_by(BaseEnvironmentRow.name))
            return [_base(row) for row in rows]

    def base(self, name: str) -> BaseEnvironment | None:
        with self._db.reading() as session:
            row = session.get(BaseEnvironmentRow, name)
            return None if row is None else _base(row)

    def save_base(self, base: BaseEnvironment, environment: Environment) -> None:
        """Record a base environment (and its built environment). Raises Conflict when the
        name is taken."""
        try:
            with self._db.writing() as session:
                session.execute(
                    insert(BASES).values(
                        name=base.name,
                        requirements=base.requirements,
                        lock=base.lock,
                        env_key=base.env_key,
                        created_by=base.created_by,
                        created_at=base.created_at,
                    )
                )
                self._record_use(session.connection(), environment, self._db.now())
        except IntegrityError as exc:
            raise Conflict(f"a base environment {base.name!r} exists already") from exc

    def delete_base(self, name: str) -> bool:
        """Forget a base environment (its folder goes with the next prune, once unused)."""
        with self._db.writing() as session:
            return _changed(session.execute(delete(BASES).where(BASES.c.name == name))) == 1
