"""What changed since a dataset's last good run: for one run (typically a FAILED one), its
spec and conf differences against the dataset's last SUCCEEDED run before it, its timings
against the dataset's median, and the first error line of its log."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from chidori.domain.environments import package_changes
from chidori.domain.errors import NotFound
from chidori.domain.records import Job, JobQuery
from chidori.domain.redact import redact_args, redact_conf
from chidori.domain.states import JobState
from chidori.domain.submitted_paths import map_paths, uploaded_files
from chidori.services.datasets import RECENT_RUNS, percentile
from chidori.services.identity import Actor
from chidori.services.jobs import JobService

# A line that says what went wrong: a log level, or a Python/Java exception line. A Python
# traceback's header says nothing yet: its exception line, which follows, is the one shown.
ERROR_LINE = re.compile(
    r"\b(ERROR|FATAL|CRITICAL|SEVERE)\b"
    r"|^\s*(Caused by: )?[\w.$]*(Error|Exception|Exit|Interrupt)\b(:|$)"
)
_FILE_REFERENCES = ("application", "py_files", "jars", "files", "archives")


@dataclass(frozen=True)
class ValueChange:
    """One spec field or conf key that differs: None on a side means it was not set."""

    key: str
    before: Any
    after: Any


@dataclass(frozen=True)
class Timing:
    name: str  # duration, queue_wait, startup, run
    seconds: float | None
    p50_seconds: float | None  # the dataset's median over its recent successful runs

    @property
    def ratio(self) -> float | None:
        if self.seconds is None or not self.p50_seconds:
            return None
        return self.seconds / self.p50_seconds


@dataclass(frozen=True)
class ErrorLine:
    number: int  # 1-based, in the log (the line a viewer links to as #L<number>)
    text: str


@dataclass(frozen=True)
class RunChanges:
    job: Job
    baseline: Job | None  # the dataset's last SUCCEEDED run before this one
    spec: list[ValueChange] = field(default_factory=list)
    conf: list[ValueChange] = field(default_factory=list)
    timings: list[Timing] = field(default_factory=list)
    first_error: ErrorLine | None = None
    # Resolved Python packages that differ ("numpy 2.1.0 → 2.2.0", "+ tabulate 0.9.0").
    packages: list[str] = field(default_factory=list)


def shown_spec(job: Job) -> dict[str, Any]:
    """The spec as anyone may see it (secret-looking values redacted)."""
    shown = job.spec.stored_dict()
    shown["conf"] = redact_conf(job.spec.conf)
    shown["args"] = redact_args(job.spec.args)
    return shown


def differences(before: dict[str, Any], after: dict[str, Any]) -> list[ValueChange]:
    keys = sorted(set(before) | set(after))
    return [
        ValueChange(key, before.get(key), after.get(key))
        for key in keys
        if before.get(key) != after.get(key)
    ]


def spec_changes(baseline: Job, job: Job) -> tuple[list[ValueChange], list[ValueChange]]:
    """(spec fields, conf keys) that differ, the job's name left out (it names the run)."""
    before, after = shown_spec(baseline), shown_spec(job)
    conf = differences(before.pop("conf"), after.pop("conf"))
    for same_by_nature in ("name",):
        before.pop(same_by_nature, None)
        after.pop(same_by_nature, None)
    return differences(before, after), conf


def submitted_files(job: Job) -> dict[str, str]:
    spec = job.spec
    references = [spec.application, *spec.py_files, *spec.jars, *spec.files, *spec.archives]
    return uploaded_files(references)


def first_error_line(text: str) -> ErrorLine | None:
    for number, line in enumerate(text.splitlines(), start=1):
        if ERROR_LINE.search(line):
            return ErrorLine(number, line.strip()[:1000])
    return None


TIMINGS = ("duration", "queue_wait", "startup", "run")


def timing_of(job: Job, name: str) -> float | None:
    value: float | None = getattr(job, f"{name}_seconds")
    return value


def succeeded_medians(runs: list[Job]) -> dict[str, float]:
    """Each timing's median over the succeeded runs among `runs`."""
    good = [job for job in runs if job.state is JobState.SUCCEEDED]
    medians = {}
    for name in TIMINGS:
        median = percentile([v for j in good if (v := timing_of(j, name)) is not None], 0.5)
        if median is not None:
            medians[name] = median
    return medians


class ChangesService:
    def __init__(
        self, jobs: JobService, packages_of: Callable[[int], dict[str, str] | None] | None = None
    ) -> None:
        """`packages_of`: a job's resolved Python packages (None: it has no environment)."""
        self._jobs = jobs
        self._packages_of = packages_of

    def changes(self, actor: Actor, job_id: int) -> RunChanges:
        """What differs between this run and its dataset's last good run before it. NotFound
        for a job `actor` may not see; a job without a dataset has no baseline."""
        job = self._jobs.get(actor, job_id)
        schema, table = job.spec.schema_name, job.spec.table_name
        baseline, medians = None, {}
        if schema and table:
            query = JobQuery(
                states=(JobState.SUCCEEDED,),
                schema_name=schema,
                table_name=table,
                before_id=job.id,
                limit=1,
            )
            found = self._jobs.search(actor, query).items
            baseline = found[0] if found else None
            recent = JobQuery(schema_name=schema, table_name=table, limit=RECENT_RUNS)
            medians = succeeded_medians(self._jobs.search(actor, recent).items)
        spec, conf = spec_changes(baseline, job) if baseline else ([], [])
        timings = [Timing(name, timing_of(job, name), medians.get(name)) for name in TIMINGS]
        packages = self._package_changes(baseline, job) if baseline else []
        first_error = self._first_error(actor, job)
        return RunChanges(job, baseline, spec, conf, timings, first_error, packages)

    def _package_changes(self, baseline: Job, job: Job) -> list[str]:
        if self._packages_of is None:
            return []
        before, after = self._packages_of(baseline.id), self._packages_of(job.id)
        if before is None and after is None:
            return []
        return package_changes(before or {}, after or {})

    def _first_error(self, actor: Actor, job: Job) -> ErrorLine | None:
        try:
            chunk = self._jobs.read_log(actor, job.id, None, 0, None)
        except NotFound:
            return None
        found = first_error_line(chunk.data.decode("utf-8", "replace"))
        if found is None:
            return None
        return ErrorLine(found.number, map_paths(found.text, submitted_files(job)))
