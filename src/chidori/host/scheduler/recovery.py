"""Recovery: attempts whose driver nobody runs any more are marked LOST, so their jobs run
again.

Two cases: an attempt whose lease expired (its server stopped renewing it, `leases`; checked
by any replica once a second, from the loop's step) and, at start, attempts left active by an
earlier run of this server (or, on a store only one server can use, by any server). Marking
an attempt LOST records the loss first (from then on its old owner can record nothing for it:
fencing), then stops what is left of it on this machine and lets its backend clean up.

Cancels are not here but in `cancels`: they stop only drivers this server runs, at the
cancel's request, every fifth of a second, and need no backend clean-up; recovery looks at
every server's attempts and cleans up after processes it does not own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from chidori.backends.base import HostedBackend
from chidori.domain.errors import ChidoriError
from chidori.domain.records import Attempt, Outcome
from chidori.domain.states import AttemptState
from chidori.host.driver_host import DriverHost
from chidori.host.processes import stop_attempt_processes
from chidori.host.scheduler.common import SCHEDULER_LOGGER, Ends, SchedulerOptions
from chidori.observe.logs import job_context
from chidori.store import AttemptRepository, JobRepository
from chidori.store.admission import AdmissionStore

log = logging.getLogger(SCHEDULER_LOGGER)


class Recovery:
    def __init__(
        self,
        jobs: JobRepository,
        attempts: AttemptRepository,
        admission: AdmissionStore,
        backends: Mapping[str, HostedBackend],
        drivers: DriverHost,
        ends: Ends,
        options: SchedulerOptions,
        found_lost: Callable[[], None] = lambda: None,
        adopt: Callable[[Attempt, str, bool], bool] = lambda _a, _r, _e: False,
    ) -> None:
        """`found_lost` is told of each attempt found LOST (for the metrics). `adopt` takes
        over an attempt whose run goes on elsewhere (a remote cluster's) instead of losing
        it: (attempt, why, only if its lease expired) -> whether it was such an attempt."""
        self._adopt = adopt
        self._found_lost = found_lost
        self._jobs = jobs
        self._attempts = attempts
        self._admission = admission
        self._backends = backends
        self._drivers = drivers
        self._ends = ends
        self._options = options

    def reap_expired(self) -> None:
        """Mark attempts whose host stopped renewing its lease LOST; retry them."""
        for attempt in self._attempts.expired_attempts():
            if (attempt.job_id, attempt.number) in self._drivers.running():
                continue  # ours and alive: the lease renewal was merely late
            why = "driver host stopped renewing its lease"
            if self._adopt(attempt, why, True):
                continue  # a remote run: watched from here on, not run again
            self.mark_lost(attempt, why)

    def recover_orphans(self, all_servers: bool) -> int:
        """At start: attempts left active by an earlier run of this server (or, on a store only
        one server can use, by any server) are LOST. Returns how many were found."""
        server = None if all_servers else self._options.server_id
        self._admission.reap_warm(
            self._options.lease_seconds, self._options.server_id if all_servers else None
        )
        orphans = [
            a
            for a in self._attempts.active_attempts(server)
            if (a.job_id, a.number) not in self._drivers.running()
        ]
        lost = 0
        for attempt in orphans:
            why = "server restarted while the driver ran"
            if not self._adopt(attempt, why, False):
                self.mark_lost(attempt, why)
                lost += 1
        return lost

    def mark_lost(self, lost: Attempt, reason: str) -> None:
        with job_context(lost.job_id, lost.number):
            self._mark_lost(lost, reason)

    def _mark_lost(self, lost: Attempt, reason: str) -> None:
        job_id, attempt, pid = lost.job_id, lost.number, lost.pid
        # Record the loss first: from then on the old owner can no longer record an outcome
        # for this attempt (fencing), whatever its driver does while being stopped.
        self._ends.finish(job_id, attempt, Outcome(AttemptState.LOST, reason))
        self._found_lost()
        # Its processes on this machine, if any (they carry their own server's id).
        stop_attempt_processes(job_id, attempt, None, 2.0, lost.server_id)
        job = self._jobs.get_job(job_id)
        backend = self._backends.get(job.spec.cluster)
        if backend is not None:
            try:
                backend.cleanup(job_id, attempt)
            except ChidoriError as exc:
                log.warning("cleanup of job %s attempt %s failed: %s", job_id, attempt, exc)
        log.info("job %s attempt %s (pid %s) lost: %s", job_id, attempt, pid, reason)
