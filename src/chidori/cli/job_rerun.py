"""``chidori jobs rerun JOB``: submit a job again with its spec, as the caller, labelled with
the job it runs again (as the UI's Re-run does); prints the new job's id. The command's
handler is `chidori.cli.jobs.rerun_job`.

The API shows a spec with secret-looking values redacted and never returns them, so a job
whose spec has any is refused here (the UI's Re-run, which submits the stored spec, runs it).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from chidori.cli.args import ArgumentParser, add_connection_flags, job_id
from chidori.cli.client import JsonObject
from chidori.cli.errors import UsageError
from chidori.cli.output import Output
from chidori.domain.redact import REDACTED
from chidori.domain.spec import BUILT_IN_APPLICATIONS
from chidori.domain.submit_command import MAX_LABELS, RERUN_LABEL


def add_rerun_parser(
    actions: argparse._SubParsersAction[ArgumentParser],
    handler: Callable[[argparse.Namespace, Output], int],
) -> None:
    """`handler`: `chidori.cli.jobs.rerun_job` (which waits as `jobs` does)."""
    p = actions.add_parser(
        "rerun", help="submit a job again with the same spec (as you); prints the new id"
    )
    p.add_argument("id", type=job_id, metavar="JOB")
    add_connection_flags(p)
    p.add_argument("--wait", action="store_true", help="wait for the end; exit with its outcome")
    p.set_defaults(handler=handler)


def rerun_spec(job: JsonObject) -> JsonObject:
    """The spec to submit for a re-run of `job` (as the API shows it); UsageError if it
    cannot be submitted again from here."""
    spec = job.get("spec")
    if not isinstance(spec, dict):
        raise UsageError(f"job {job.get('id')} came without a spec")
    if spec.get("kind") in {kind.value for kind in BUILT_IN_APPLICATIONS}:
        raise UsageError(
            f"job {job.get('id')} is a {spec.get('kind')} job: start a new one from its client"
        )
    hidden = [f"conf {key}" for key, value in (spec.get("conf") or {}).items() if REDACTED in value]
    if any(REDACTED in arg for arg in spec.get("args") or []):
        hidden.append("args")
    if hidden:
        raise UsageError(
            f"job {job.get('id')}'s spec has values the API redacts ({', '.join(hidden)}), "
            "which it never returns",
            hint="use Re-run on the job's page in the UI, which submits the stored values",
        )
    labels = dict(spec.get("labels") or {})
    if RERUN_LABEL in labels or len(labels) < MAX_LABELS:
        labels[RERUN_LABEL] = str(job.get("id"))
    return {**spec, "labels": labels}
