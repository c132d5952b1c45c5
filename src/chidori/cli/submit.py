"""``chidori submit``: upload the local files of a :class:`SubmitPlan`, submit the job, and
(with ``--wait``/``--follow``) wait for its end and exit with its outcome.

The command line itself is read by :mod:`chidori.cli.submit_flags`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from chidori.cli.client import ApiError, ChidoriClient, JsonObject
from chidori.cli.errors import UsageError
from chidori.cli.exit_codes import ExitCode
from chidori.cli.jobs import follow_job, outcome_code, report_outcome, wait_for_end
from chidori.cli.output import Output
from chidori.cli.progress_lines import ui_url
from chidori.cli.settings import resolve
from chidori.cli.submit_flags import Source, SubmitPlan, parse_submit


def materialize(plan: SubmitPlan, upload: Callable[[Path], str]) -> JsonObject:
    """The final job spec: each local file replaced by the URI ``upload`` gives (once a file)."""
    uploaded: dict[Path, str] = {}

    def uri(source: Source) -> str:
        if isinstance(source, str):
            return source
        key = source.path.resolve()
        if key not in uploaded:
            uploaded[key] = upload(source.path)
        return uploaded[key] + (f"#{source.fragment}" if source.fragment else "")

    spec = dict(plan.spec)
    spec["application"] = uri(plan.application)
    for key, sources in plan.dependencies.items():
        spec[key] = [uri(s) for s in sources]
    return spec


def upload_file(client: ChidoriClient, path: Path) -> str:
    answer = client.upload(path)
    uri = answer.get("uri")
    if not isinstance(uri, str) or not uri:
        raise ApiError(201, "invalid_response", f"the upload of {path} answered without a uri")
    return uri


def run(argv: Sequence[str], out: Output) -> int:
    plan = parse_submit(argv)
    for note in plan.notes:
        out.note(note)
    settings = resolve(plan.server, plan.token)
    with ChidoriClient(settings.url, settings.token) as client:
        try:
            spec = materialize(plan, lambda path: upload_file(client, path))
        except OSError as exc:
            raise UsageError(f"cannot read {exc.filename}: {exc.strerror}") from exc
        job = client.submit_job(spec, plan.idempotency_key)
        job_id = int(job["id"])
        if not plan.wait:
            if plan.json:
                out.json(job)
            else:
                out.out(str(job_id))
            return ExitCode.OK
        try:
            if plan.follow:
                out.err(f"submitted job {job_id}")
                out.err(f"view it at {ui_url(settings.url, job_id)}")
                final = follow_job(client, job, out, progress=True, logs_to_stderr=plan.json)
            else:
                if not plan.json:
                    out.out(str(job_id))
                out.err(f"view it at {ui_url(settings.url, job_id)}")
                final = wait_for_end(client, job, out)
        except KeyboardInterrupt:
            out.err(
                f"interrupted; job {job_id} keeps running "
                f"(stop it with `chidori jobs cancel {job_id}`)"
            )
            return ExitCode.INTERRUPTED
        if plan.json:
            out.json(final)
        report_outcome(final, out)
        return outcome_code(final)
