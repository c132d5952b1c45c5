"""A job's whole driver log: every attempt's log in order, each after a separator line, so a
retried job reads as one story (the per-attempt logs stay available one by one)."""

from __future__ import annotations

from collections.abc import Iterator

from chidori.domain.errors import NotFound
from chidori.domain.records import Attempt
from chidori.services.identity import Actor
from chidori.services.jobs import JobService


def separator(attempt: Attempt) -> bytes:
    """The line that opens an attempt's part of the whole log."""
    ended = attempt.finished_at.isoformat() if attempt.finished_at else "still running"
    line = (
        f"===== attempt {attempt.number}: {attempt.state.value}, "
        f"started {attempt.started_at.isoformat()}, ended {ended} ====="
    )
    return f"{line}\n".encode()


class WholeJobLog:
    def __init__(self, jobs: JobService) -> None:
        self._jobs = jobs

    def download(self, actor: Actor, job_id: int) -> tuple[str, Iterator[bytes]]:
        """(file name, chunks) of every attempt's log in order; access is checked first, each
        log is opened only when its turn comes."""
        attempts = self._jobs.attempts(actor, job_id)

        def chunks() -> Iterator[bytes]:
            if not attempts:
                yield b"(no attempt yet)\n"
            for attempt in attempts:
                yield separator(attempt)
                try:
                    _, _, body = self._jobs.download_log(actor, job_id, attempt.number)
                except NotFound:
                    yield b"(no driver log kept for this attempt)\n"
                    continue
                last = b"\n"
                for chunk in body:
                    last = chunk[-1:] or last
                    yield chunk
                if last != b"\n":
                    yield b"\n"

        return f"job-{job_id}-all-attempts.log", chunks()
