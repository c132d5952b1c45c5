"""Warm drivers: start the ones the admit step reserved, keep the processes in line with the
store, back off from a cluster whose warm drivers cannot start.

The store holds the reservations (`warm_drivers` rows, counted by the admit step, which also
decides which to start and which to retire); `chidori.host.warm_pool.WarmPool` holds the
processes. This part turns one into the other: it starts a process for each new row, marks
a row idle once its driver is ready, stops processes whose row is retiring or gone, and
forgets rows whose process is gone. A cluster whose warm driver could not start gets no new
ones for a minute: `plan()` leaves it out of what the loop hands the admit step. Handing a
job to a warm driver is the launcher's (`launcher`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from concurrent.futures import Executor

from chidori.backends.base import HostedBackend
from chidori.domain.errors import ChidoriError
from chidori.host.scheduler.common import SCHEDULER_LOGGER, SchedulerOptions, Signals
from chidori.host.warm_pool import WarmPool
from chidori.store import Database
from chidori.store.admission import AdmissionStore, WarmPlan

log = logging.getLogger(SCHEDULER_LOGGER)
# How long a cluster whose warm driver could not start gets no new ones.
_BROKEN_SECONDS = 60


class WarmReconciler:
    def __init__(
        self,
        db: Database,
        admission: AdmissionStore,
        backends: Mapping[str, HostedBackend],
        pool: WarmPool,
        executor: Executor,
        signals: Signals,
        options: SchedulerOptions,
    ) -> None:
        """`executor`: where warm drivers are started (beside the loop, with the launches)."""
        self._db = db
        self._admission = admission
        self._backends = backends
        self._pool = pool
        self._executor = executor
        self._signals = signals
        self._options = options
        warm_conf = {name: b.warm_conf() for name, b in backends.items()}
        self._plan = WarmPlan(
            {name: backends[name].cluster.warm_pool for name, c in warm_conf.items() if c},
            {name: c for name, c in warm_conf.items() if c},
        )
        self._broken_until: dict[str, float] = {}

    @property
    def has_pools(self) -> bool:
        """Whether any cluster keeps warm drivers (else there is nothing to reconcile)."""
        return bool(self._plan.pools)

    def plan(self) -> WarmPlan:
        """The warm pools for the admit step, without the clusters backed off from."""
        now = time.monotonic()
        plan = self._plan
        if any(until > now for until in self._broken_until.values()):
            plan = WarmPlan(
                {c: p for c, p in plan.pools.items() if self._broken_until.get(c, 0) <= now},
                plan.fixed_conf,
            )
        return plan

    def start_soon(self, warm_id: str, cluster: str) -> None:
        """Start the warm driver the admit step reserved, beside the loop."""
        self._executor.submit(self._start_warm, warm_id, cluster)

    def _start_warm(self, warm_id: str, cluster: str) -> None:
        try:
            command = self._backends[cluster].warm_command(self._pool.control_dir(warm_id))
            pid = self._pool.start(warm_id, cluster, command)
        except (ChidoriError, OSError) as exc:
            log.error("could not start a warm driver for cluster %s: %s", cluster, exc)
            self._broken_until[cluster] = time.monotonic() + _BROKEN_SECONDS
            self._admission.drop_warm([warm_id])
            return
        self._admission.set_warm_state(warm_id, "starting", pid)

    def gone(self, warm_id: str) -> None:
        """A warm driver's process ended (the pool's callback): its slot is free again."""
        self._admission.drop_warm([warm_id])
        self._signals.freed()

    def reconcile_warm(self) -> None:
        """Bring this server's warm processes in line with the store: mark ready ones idle,
        stop the ones being retired (or whose reservation is gone), forget rows whose process
        is gone."""
        local = self._pool.ids()
        rows = self._admission.warm_drivers(self._options.server_id)
        recorded = {row.id for row in rows}
        gone: list[str] = []
        for row in rows:
            if row.id not in local:
                # Rows are written before their process starts: give that a moment.
                age = (self._db.now() - row.created_at).total_seconds()
                if row.state != "starting" or age > 30:
                    gone.append(row.id)
            elif row.state == "retiring":
                self._pool.stop(row.id)
            elif (
                row.state == "starting"
                and self._pool.is_ready(row.id)
                and self._admission.set_warm_state(row.id, "idle")
            ):
                log.info("warm driver %s for cluster %s is ready", row.id, row.cluster)
                self._signals.wake()
        for warm_id in local - recorded:
            self._pool.stop(warm_id)
        if gone:
            self._admission.drop_warm(gone)

    def drop_all(self) -> None:
        """At stop: forget this server's reservations (its warm processes are stopped)."""
        self._admission.drop_warm(
            [w.id for w in self._admission.warm_drivers(self._options.server_id)]
        )
