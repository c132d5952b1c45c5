"""The relay: moves statements between the store and the session drivers this server hosts.

One thread, every POLL_SECONDS, only while this server hosts drivers of Livy sessions. For
each, it reads the driver's control directory (`<work dir>/<job>/attempt-<n>/control/`, see
chidori.runtime.session_driver): the `ready` marker, `started/<n>` markers and `out/<n>.json`
results go into the store; waiting statements go to `in/<n>.json` and cancel requests to
`cancel/<n>`. Every other replica answers the API from the store alone.

When a session's driver ends, what it had started and not finished ends `error` (the next
attempt, if the job is retried, has a fresh namespace); statements it had not started yet go
to the next attempt's driver.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chidori.domain.errors import StoreUnavailable
from chidori.host.jobfs import JobFolder
from chidori.store.sessions import (
    CANCELLED,
    CANCELLING,
    WAITING,
    SessionStore,
    Statement,
)

log = logging.getLogger(__name__)

POLL_SECONDS = 0.05
HostedDrivers = Callable[[], list[tuple[int, int]]]  # (job id, attempt) of session drivers here


def _from_ms(value: object, default: datetime) -> datetime:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return datetime.fromtimestamp(value / 1000, UTC)
    return default


class SessionRelay:
    def __init__(
        self,
        store: SessionStore,
        hosted: HostedDrivers,
        work_dir: Path,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        self._store = store
        self._hosted = hosted
        self._work_dir = work_dir
        self._poll = poll_seconds
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._relaying: set[tuple[int, int]] = set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="session-relay", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def control_dir(self, job_id: int, attempt: int) -> JobFolder:
        """The driver's control folder: the job's, so read and written without following
        links (chidori.host.jobfs)."""
        return JobFolder(self._work_dir / str(job_id), [f"attempt-{attempt}", "control"])

    def _run(self) -> None:
        while not self._stopped.wait(self._poll):
            try:
                self.step()
            except StoreUnavailable as exc:
                log.warning("session relay step skipped: %s", exc)
                self._stopped.wait(1)
            except Exception:
                log.exception("session relay step failed")
                self._stopped.wait(1)

    def step(self) -> None:
        """One pass over the session drivers hosted here (nothing to do without any)."""
        hosted = self._hosted()
        sessions = self._store.sessions_among({j for j, _ in hosted}) if hosted else {}
        current = {(j, a) for j, a in hosted if j in sessions}
        for job_id, attempt in sorted(self._relaying - current):
            self._driver_ended(job_id, attempt)
        self._relaying = current
        for job_id, attempt in sorted(current):
            ready = sessions[job_id].ready_attempt == attempt
            self._relay(job_id, attempt, ready)

    def _relay(self, job_id: int, attempt: int, ready: bool) -> None:
        control = self.control_dir(job_id, attempt)
        if not ready:
            if not control.exists("ready"):
                return
            self._store.mark_ready(
                job_id, attempt, f"the session's driver was replaced (attempt {attempt})"
            )
        statements = self._store.list_statements(job_id, active_only=True)
        self._collect(job_id, attempt, control, statements)
        self._deliver(job_id, attempt, control, statements)

    def _collect(
        self, job_id: int, attempt: int, control: JobFolder, statements: list[Statement]
    ) -> None:
        """Results and start markers of statements this driver has, into the store."""
        now = self._store.now()
        for statement in statements:
            if statement.attempt != attempt:
                continue
            result = _read_json(control.read("out", f"{statement.number}.json"))
            if result is not None:
                state = result.get("state")
                # A cancel asked for while it ran wins, as in Livy (cancelling -> cancelled).
                if statement.state == CANCELLING or state == CANCELLED:
                    state = CANCELLED
                output = result.get("output")
                self._store.mark_finished(
                    job_id,
                    statement.number,
                    attempt,
                    state if state in ("available", CANCELLED) else "available",
                    output if isinstance(output, dict) else None,
                    _from_ms(result.get("started"), now),
                    _from_ms(result.get("completed"), now),
                )
            elif statement.state == WAITING:
                started = _read_text(control.read("started", str(statement.number)))
                if started is not None:
                    millis = int(started) if started.strip().isdigit() else 0
                    self._store.mark_started(
                        job_id, statement.number, attempt, _from_ms(millis, now)
                    )

    def _deliver(
        self, job_id: int, attempt: int, control: JobFolder, statements: list[Statement]
    ) -> None:
        """Waiting statements to the driver, and cancel requests for those it has."""
        handed: list[int] = []
        for statement in statements:
            if statement.state == WAITING and statement.attempt != attempt:
                request = {"id": statement.number, "code": statement.code, "kind": statement.kind}
                if control.write(
                    "in", f"{statement.number}.json", data=json.dumps(request).encode()
                ):
                    handed.append(statement.number)
            elif (
                statement.state == CANCELLING
                and statement.attempt == attempt
                and not control.exists("cancel", str(statement.number))
            ):
                control.write("cancel", str(statement.number), data=b"")
        if handed:
            self._store.mark_delivered(job_id, handed, attempt)

    def _driver_ended(self, job_id: int, attempt: int) -> None:
        """Take what the driver finished before it exited; fail what it left running."""
        control = self.control_dir(job_id, attempt)
        statements = self._store.list_statements(job_id, active_only=True)
        self._collect(job_id, attempt, control, statements)
        self._store.fail_attempt(
            job_id, attempt, f"the session's driver (attempt {attempt}) ended during it"
        )


def _read_text(data: bytes | None) -> str | None:
    return None if data is None else data.decode("utf-8", "replace")


def _read_json(data: bytes | None) -> dict[str, Any] | None:
    if data is None:
        return None
    try:
        value = json.loads(data)
    except ValueError:
        log.warning("unreadable session result")
        return None
    return value if isinstance(value, dict) else None
