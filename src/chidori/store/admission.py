"""The admission store: the limits and queues admins set, queue statistics, the warm-driver
registry, and the entry to the atomic admit step (`chidori.store.admit_step`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from chidori.domain.admission import (
    Resources,
    Usage,
)
from chidori.domain.limits import LimitsDoc, QueueDoc
from chidori.domain.records import QueueStats, Server
from chidori.domain.states import JobState
from chidori.domain.warm_planning import WarmDriver, WarmPlan, WarmState
from chidori.store.admission_reads import (
    LIMITS_KEY,
    WARM_POOL_KEY,
    ParsedSettings,
    pool_sizes,
    usage_of,
    warm_record,
)
from chidori.store.admit_step import AdmitResult, AdmitStep
from chidori.store.attempts import AttemptRepository
from chidori.store.database import Database
from chidori.store.models import (
    JobRow,
    QueueRow,
    ServerRow,
    SettingRow,
    WarmDriverRow,
)
from chidori.store.servers import ServerRegistry

__all__ = ["AdmissionStore", "AdmitResult", "WarmDriver", "WarmPlan"]


class AdmissionStore:
    def __init__(self, store: Database, default_limits: LimitsDoc) -> None:
        self._store = store
        # Stateless views over the same database: the admit step ends attempts in its own
        # transaction, and counts the servers that are up.
        self._attempts = AttemptRepository(store)
        self._servers = ServerRegistry(store)
        self._settings = ParsedSettings(default_limits)
        # Admit every waiting job that fits now (`AdmitStep`): one transaction.
        self.admit = AdmitStep(store, self._settings)

    # ---- limits and queues ------------------------------------------------------------------

    def _limits(self, session: Session) -> LimitsDoc:
        return self._settings.read_limits(session.connection())

    def get_limits(self) -> LimitsDoc:
        with self._store.reading() as session:
            return self._limits(session)

    def put_limits(self, limits: LimitsDoc, by: str) -> LimitsDoc:
        self.admit.forget_cap()  # this replica's change applies at once
        value = limits.model_dump(mode="json")
        now = self._store.now()
        with self._store.writing() as session:
            row = session.get(SettingRow, LIMITS_KEY)
            if row is None:
                session.add(SettingRow(key=LIMITS_KEY, value=value, updated_at=now, updated_by=by))
            else:
                row.value, row.updated_at, row.updated_by = value, now, by
        self._store.notify_change()
        return limits

    def _queues(self, session: Session) -> dict[str, QueueDoc]:
        return self._settings.read_queues(session.connection())

    def queues(self) -> dict[str, QueueDoc]:
        with self._store.reading() as session:
            return self._queues(session)

    def put_queue(self, name: str, doc: QueueDoc) -> QueueDoc:
        now = self._store.now()
        values: dict[str, Any] = {
            "priority": doc.priority,
            "weight": doc.weight,
            "max_running_jobs": doc.max_running_jobs,
            "max_memory_mb": doc.limit().max_memory_mb,
            "max_cores": doc.max_cores,
            "updated_at": now,
        }
        with self._store.writing() as session:
            row = session.get(QueueRow, name)
            if row is None:
                session.add(QueueRow(name=name, created_at=now, **values))
            else:
                for key, value in values.items():
                    setattr(row, key, value)
        self._store.notify_change()
        return doc

    def queue_stats(self) -> list[QueueStats]:
        with self._store.reading() as session:
            configs = self._queues(session)
            usage, _ = usage_of(session.connection())
            waiting = {
                queue: (int(count), oldest)
                for queue, count, oldest in session.execute(
                    select(JobRow.queue, func.count(), func.min(JobRow.created_at))
                    .where(JobRow.state == JobState.QUEUED.value)
                    .group_by(JobRow.queue)
                )
            }
        names = sorted(set(configs) | set(waiting) | set(usage.by_queue))
        return [
            QueueStats(
                name,
                configs.get(name, QueueDoc()),
                waiting.get(name, (0, None))[0],
                usage.by_queue.get(name, Resources()),
                waiting.get(name, (0, None))[1],
            )
            for name in names
        ]

    def usage(self) -> tuple[Usage, int]:
        """What active jobs hold now, and how many jobs wait."""
        with self._store.reading() as session:
            waiting = session.scalar(
                select(func.count())
                .select_from(JobRow)
                .where(JobRow.state == JobState.QUEUED.value)
            )
            return usage_of(session.connection())[0], int(waiting or 0)

    def servers(self) -> list[Server]:
        return self._servers.list_servers()

    # ---- warm drivers ------------------------------------------------------------------------

    def _warm_sizes(self, session: Session) -> dict[str, int]:
        row = session.get(SettingRow, WARM_POOL_KEY)
        return pool_sizes(row.value if row is not None else None)

    def warm_sizes(self) -> dict[str, int]:
        """Warm pool sizes an admin set at run time, by cluster (they win over the config)."""
        with self._store.reading() as session:
            return self._warm_sizes(session)

    def put_warm_size(self, cluster: str, size: int | None, by: str) -> dict[str, int]:
        """Set (or, with None, forget) the run-time pool size of `cluster`."""
        now = self._store.now()
        with self._store.writing() as session:
            sizes = self._warm_sizes(session)
            if size is None:
                sizes.pop(cluster, None)
            else:
                sizes[cluster] = size
            row = session.get(SettingRow, WARM_POOL_KEY)
            if row is None:
                session.add(
                    SettingRow(key=WARM_POOL_KEY, value=sizes, updated_at=now, updated_by=by)
                )
            else:
                row.value, row.updated_at, row.updated_by = dict(sizes), now, by
        self._store.notify_change()
        return sizes

    def warm_drivers(self, server_id: str | None = None) -> list[WarmDriver]:
        with self._store.reading() as session:
            query = select(WarmDriverRow).order_by(WarmDriverRow.created_at)
            if server_id is not None:
                query = query.where(WarmDriverRow.server_id == server_id)
            return [warm_record(row) for row in session.scalars(query)]

    def set_warm_state(self, warm_id: str, state: str, pid: int | None = None) -> bool:
        """Move a warm driver from starting to idle (or note its pid). False if its row is gone
        (a job took it over, or another replica reaped it)."""
        values: dict[str, Any] = {"state": state}
        if pid is not None:
            values["pid"] = pid
        with self._store.writing() as session:
            result = session.execute(
                update(WarmDriverRow)
                .where(WarmDriverRow.id == warm_id, WarmDriverRow.state != WarmState.RETIRING.value)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    def drop_warm(self, warm_ids: Sequence[str]) -> None:
        """Forget warm drivers whose processes are gone: their reservations are free again."""
        if not warm_ids:
            return
        with self._store.writing() as session:
            session.execute(
                delete(WarmDriverRow)
                .where(WarmDriverRow.id.in_(list(warm_ids)))
                .execution_options(synchronize_session=False)
            )
        self._store.notify_change()

    def reap_warm(self, lease_seconds: float, all_servers_but: str | None = None) -> int:
        """Drop the warm drivers of servers that stopped or stopped renewing their heartbeat
        (their watchdog has stopped the processes). With `all_servers_but`, every server's but
        that one (a database only one server uses: whatever else is recorded is stale)."""
        cutoff = self._store.now() - timedelta(seconds=lease_seconds)
        with self._store.writing() as session:
            if all_servers_but is not None:
                stale = delete(WarmDriverRow).where(WarmDriverRow.server_id != all_servers_but)
            else:
                live = select(ServerRow.id).where(
                    ServerRow.stopped_at.is_(None), ServerRow.heartbeat_at >= cutoff
                )
                stale = delete(WarmDriverRow).where(WarmDriverRow.server_id.not_in(live))
            result = session.execute(stale.execution_options(synchronize_session=False))
        count = int(result.rowcount)  # type: ignore[attr-defined]
        if count:
            self._store.notify_change()
        return count
