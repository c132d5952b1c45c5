"""The job page's "Re-run": a new job with the spec of one the caller may see, submitted by
the caller through `JobService.rerun` (the checks of any submission: role, rate, policy,
references, limits), labelled with the job it runs again; and the page's "Copy as
`chidori submit`" line, from the spec as anyone sees it (secret-looking values redacted)."""

from __future__ import annotations

import re
import secrets

from chidori.domain.records import Job
from chidori.domain.redact import redact_args, redact_conf
from chidori.domain.submit_command import RERUN_LABEL, can_render, submit_command
from chidori.services.identity import Actor
from chidori.services.jobs import JobService

# A form's one-time value: the same form sent twice (a double click) makes one job, as the
# idempotency key of a REST submission does.
NONCE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


def new_nonce() -> str:
    return secrets.token_urlsafe(16)


def rerun_job(jobs: JobService, actor: Actor, job_id: int, nonce: str) -> Job:
    """Submit job `job_id` again as `actor`; returns the new job (or, for a form sent again,
    the job it made first). NotFound if `actor` may not see the job, Forbidden if it may not
    submit, InvalidRequest if the spec does not pass today's checks."""
    key = f"ui-rerun-{job_id}-{nonce}" if NONCE.match(nonce) else None
    return jobs.rerun(actor, job_id, idempotency_key=key)


def shown_command(job: Job) -> str | None:
    """The `chidori submit` line that submits this job again, secrets redacted as the page's
    spec shows them; None for kinds the CLI does not submit."""
    if not can_render(job.spec):
        return None
    shown = job.spec.model_copy(
        update={"conf": redact_conf(job.spec.conf), "args": redact_args(job.spec.args)}
    )
    return submit_command(shown)


def rerun_of(job: Job) -> int | None:
    """The job this one runs again, when it is a re-run."""
    value = job.spec.labels.get(RERUN_LABEL, "")
    return int(value) if value.isascii() and value.isdigit() and len(value) < 19 else None
