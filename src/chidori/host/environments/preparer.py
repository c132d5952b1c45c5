"""Preparing held jobs' environments before admission, on every replica.

A job with requirements is stored held (chidori.store.environments): the admit step does
not see it, so it takes no slot while its packages resolve and install. This thread finds
held jobs (woken by submissions, and once a second for other replicas' jobs), claims each in
the store (one server per job), resolves its requirements, builds or finds the environment,
and then releases the job to admission, or fails it with the resolver's message. Several
jobs are prepared at once (`workers`); two asking for one new environment build it once
(the builder's lock).
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from chidori.domain.environments import Environment, base_requirements, parse_lock
from chidori.host.environments.builder import EnvironmentBuilder, Resolution, ResolutionFailed
from chidori.host.environments.pruning import EnvironmentPruner
from chidori.observe.logs import job_context
from chidori.store.environments import EnvironmentRepository

log = logging.getLogger(__name__)


class EnvironmentPreparer:
    def __init__(
        self,
        repo: EnvironmentRepository,
        builder: EnvironmentBuilder,
        pruner: EnvironmentPruner,
        server_id: str,
        workers: int = 2,
        interval: float = 1.0,
    ) -> None:
        self._repo = repo
        self._builder = builder
        self._pruner = pruner
        self._server_id = server_id
        self._interval = interval
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="env-prepare")
        self._busy: set[int] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="env-preparer", daemon=True)

    def start(self, only_server: bool = False) -> None:
        """`only_server`: no other server shares the store (SQLite): claims left by an
        earlier run are dropped, and their jobs prepared again at once."""
        self._builder.prepare_directory()
        if only_server:
            dropped = self._repo.drop_claims()
            if dropped:
                log.info("preparing again %d environment(s) an earlier run had claimed", dropped)
        self._thread.start()

    def wake(self, _job_id: int | None = None) -> None:
        """A store listener: something changed that may be a new held job."""
        self._wake.set()

    def close(self, wait: bool = False) -> None:
        """Stop. `wait`: finish every preparation claimed so far first; otherwise those
        not started are dropped (their claims go stale and another server takes them)."""
        self._closed.set()
        self._wake.set()
        self._pool.shutdown(wait=wait, cancel_futures=not wait)

    def _loop(self) -> None:
        renew_every = self._repo.stale_after.total_seconds() / 4
        renewed = time.monotonic()
        while not self._closed.is_set():
            self._wake.wait(self._interval)
            self._wake.clear()
            if self._closed.is_set():
                return
            try:
                self.step()
                if time.monotonic() - renewed >= renew_every:
                    with self._lock:
                        busy = sorted(self._busy)
                    self._repo.renew(busy, self._server_id)
                    renewed = time.monotonic()
            except Exception:
                log.exception("preparing environments failed; trying again")

    def step(self) -> int:
        """Claim the held jobs nobody prepares and start preparing them. Returns how many."""
        started = 0
        for job_id, requirements, base in self._repo.held_jobs():
            with self._lock:
                if job_id in self._busy:
                    continue
            if not self._repo.claim(job_id, self._server_id):
                continue
            with self._lock:
                self._busy.add(job_id)
            self._pool.submit(self._prepare_logged, job_id, requirements, base)
            started += 1
        return started

    def _prepare_logged(self, job_id: int, requirements: list[str], base: str | None) -> None:
        with job_context(job_id, None):
            try:
                self.prepare(job_id, requirements, base)
            except Exception:
                log.exception("preparing the environment of job %s failed", job_id)
            finally:
                with self._lock:
                    self._busy.discard(job_id)

    def _resolution(self, requirements: list[str], base_name: str | None) -> Resolution:
        """The job's lock: resolved, or its base environment's when it adds nothing."""
        if base_name is None:
            return self._builder.resolve(requirements)
        base = self._repo.base(base_name)
        if base is None:
            message = f"there is no base environment {base_name!r} (GET /api/v1/environments/base)"
            raise ResolutionFailed(message, message)
        if not requirements:
            return Resolution(base.lock, f"base environment {base_name!r}\n", 0.0)
        return self._builder.resolve(base_requirements(base.lock, requirements))

    def prepare(self, job_id: int, requirements: list[str], base: str | None = None) -> None:
        """Resolve and build (or find) the job's environment, then release or fail it."""
        try:
            resolution = self._resolution(requirements, base)
            built = self._builder.ensure(resolution.lock)
        except ResolutionFailed as exc:
            reason = f"could not resolve the job's requirements: {exc.message}"
            self._repo.fail(job_id, self._server_id, reason, exc.log)
            log.info("job %s: %s", job_id, reason)
            return
        outcome = (
            f"cache hit in {built.seconds:.3f} s"
            if built.hit
            else f"built in {built.seconds:.2f} s ({built.size_bytes / 1e6:.1f} MB)"
        )
        resolved = (
            f"resolved {len(parse_lock(resolution.lock))} packages in {resolution.seconds:.2f} s"
        )
        job_log = "\n".join(
            part.rstrip("\n")
            for part in (
                "requirements: " + " ".join(requirements) + (f" (on base {base})" if base else ""),
                resolution.log,
                resolution.lock,
                built.log,
                f"{resolved}; environment {built.key[:12]} {outcome}",
            )
            if part.strip()
        )
        now = self._repo.now()
        size = built.size_bytes
        if built.hit and not self._repo.has_environment(built.key):  # built, then not recorded
            size = self._builder.size_of(built.key)
        environment = Environment(
            key=built.key,
            python=self._builder.python_version,
            platform=self._builder.platform,
            packages=parse_lock(resolution.lock),
            size_bytes=size,
            build_seconds=0.0 if built.hit else built.seconds,
            built_by=self._server_id,
            created_at=now,
            last_used_at=now,
        )
        note = f"Python environment {built.key[:12]} ready: {resolved}, {outcome}"
        self._repo.release(job_id, self._server_id, environment, resolution.lock, job_log, note)
        if not built.hit:
            self._pruner.prune()
