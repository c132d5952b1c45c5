"""A job again: the `chidori submit` command line that submits a spec, and the spec of a
re-run.

`submit_argv` is the inverse of the CLI's parser (`chidori.cli.submit_flags`, which the
client owns, so this is kept in step by a round-trip test: parsing the rendered command gives
the spec back). An upload is rendered as the name it was submitted under (the CLI uploads
that file again from where the command runs); a path on the server is rendered as it is, so
the CLI uploads the file of that name from the machine it runs on.
"""

from __future__ import annotations

import math
import shlex

from pydantic import ValidationError

from chidori.domain.errors import FieldError, InvalidRequest
from chidori.domain.spec import BUILT_IN_APPLICATIONS, JobKind, JobSpec

RERUN_LABEL = "chidori/rerun-of"
"""The label a re-run carries: the id of the job it runs again."""
MAX_LABELS = 64  # JobSpec's own cap: a spec that has them all is re-run without the label

_UPLOAD_PREFIX = "upload://"
_DEPENDENCY_FLAGS = (
    ("py_files", "--py-files"),
    ("jars", "--jars"),
    ("files", "--files"),
    ("archives", "--archives"),
)
_DEFAULTS = {name: field.default for name, field in JobSpec.model_fields.items()}


def submitted_name(reference: str) -> str:
    """An upload (`upload://<sha256>/<name>[#alias]`) as the user named it (`name[#alias]`);
    any other reference unchanged."""
    if not reference.startswith(_UPLOAD_PREFIX):
        return reference
    _sha, _, name = reference.removeprefix(_UPLOAD_PREFIX).partition("/")
    return name or reference


def can_render(spec: JobSpec) -> bool:
    """Whether `chidori submit` can submit this kind (not sessions nor Connect servers,
    which run Chidori's own drivers and are started by their clients)."""
    return spec.kind not in BUILT_IN_APPLICATIONS


def submit_argv(spec: JobSpec) -> list[str]:
    """`chidori submit`'s arguments (after `submit`) for this spec: only what differs from
    the defaults. A timeout with a fraction of a second is rounded up (the CLI takes whole
    seconds). Raises ValueError for a kind the CLI does not submit (see `can_render`)."""
    if not can_render(spec):
        raise ValueError(f"kind {spec.kind.value!r} is not submitted with chidori submit")
    argv: list[str] = []

    def option(flag: str, value: object, default: object = None) -> None:
        if value is not None and value != default:
            argv.extend((flag, str(value)))

    option("--kind", spec.kind.value, JobKind.SPARK.value)
    option("--name", spec.name)
    option("--class", spec.main_class)
    option("--cluster", spec.cluster, _DEFAULTS["cluster"])
    option("--queue", spec.queue, _DEFAULTS["queue"])
    option("--priority", spec.priority, _DEFAULTS["priority"])
    option("--driver-memory", spec.driver_memory, _DEFAULTS["driver_memory"])
    option("--driver-cores", spec.driver_cores, _DEFAULTS["driver_cores"])
    option("--num-executors", spec.executor_instances, _DEFAULTS["executor_instances"])
    option("--executor-memory", spec.executor_memory, _DEFAULTS["executor_memory"])
    option("--executor-cores", spec.executor_cores, _DEFAULTS["executor_cores"])
    for key, value in spec.conf.items():
        argv.extend(("--conf", f"{key}={value}"))
    for field, flag in _DEPENDENCY_FLAGS:
        entries: list[str] = getattr(spec, field)
        if entries:
            argv.extend((flag, ",".join(submitted_name(e) for e in entries)))
    option("--schema", spec.schema_name)
    option("--table", spec.table_name)
    for key, value in spec.labels.items():
        argv.extend(("--label", f"{key}={value}"))
    option("--max-retries", spec.max_retries, _DEFAULTS["max_retries"])
    if not spec.rerun_lost:
        argv.append("--no-rerun-lost")
    if spec.timeout is not None:
        argv.extend(("--timeout", _duration(math.ceil(spec.timeout))))
    for requirement in spec.requirements:
        argv.extend(("--pip", requirement))
    application = submitted_name(spec.application)
    if application.startswith("-"):
        argv.append("--")  # APP itself looks like an option: `--` says it is not one
    argv.append(application)
    argv.extend(spec.args)
    return argv


def _duration(seconds: int) -> str:
    """Whole minutes as the CLI's `1h30m`, anything else in seconds (`90`)."""
    if seconds < 60 or seconds % 60:
        return str(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def submit_command(spec: JobSpec) -> str:
    """`submit_argv` as one shell command line (each argument quoted with shlex)."""
    return shlex.join(["chidori", "submit", *submit_argv(spec)])


def rerun_spec(spec: JobSpec, job_id: int) -> JobSpec:
    """The spec of a new job running job `job_id` again: the same spec, labelled with
    `RERUN_LABEL`, validated as new input (checks added since the job was stored apply).
    Raises InvalidRequest naming each field that does not pass."""
    if not can_render(spec):
        raise InvalidRequest.for_field(
            "kind",
            f"a {spec.kind.value} job is not re-run from here: start a new one from its client",
        )
    labels = dict(spec.labels)
    if RERUN_LABEL in labels or len(labels) < MAX_LABELS:
        labels[RERUN_LABEL] = str(job_id)
    try:
        return JobSpec.model_validate({**spec.stored_dict(), "labels": labels})
    except ValidationError as exc:
        fields = [
            FieldError(".".join(str(p) for p in error["loc"]) or "spec", error["msg"])
            for error in exc.errors()
        ]
        raise InvalidRequest("; ".join(f"{f.field}: {f.message}" for f in fields), fields) from None
