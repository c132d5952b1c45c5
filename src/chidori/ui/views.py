"""What the UI pages show: filters read from the URL, and jobs turned into template data."""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from starlette.datastructures import QueryParams

from chidori.domain.admission import Limit, Resources
from chidori.domain.errors import InvalidRequest
from chidori.domain.records import Job, JobQuery
from chidori.domain.states import JobState
from chidori.domain.units import format_memory
from chidori.domain.warm_planning import WarmDriver
from chidori.web.job_views import decode_cursor, encode_cursor, public_spec

PAGE_SIZES = (10, 25, 50, 100, 200)
ACTIVE_STATES = frozenset({JobState.QUEUED, JobState.ADMITTED, JobState.RUNNING})
_TEXT_FIELDS = {
    "schema": 256,
    "table": 256,
    "queue": 128,
    "cluster": 128,
    "user": 128,
    "q": 200,
    "label": 300,
}
SORTS = ("id", "duration")
_TRAIL_PAGES = 50  # previous pages remembered in the URL (older ones go back to the first)


@dataclass(frozen=True)
class JobFilters:
    """The jobs page's filters, as they appear in its URL (a GET form: bookmarkable)."""

    states: tuple[JobState, ...] = ()
    created_from: date | None = None
    created_to: date | None = None
    text: dict[str, str] = field(default_factory=dict)
    order: str = "newest"
    limit: int = 50
    cursor: str | None = None
    sort: str = "id"  # "duration": the page's jobs, longest first (the page itself is by id)
    trail: tuple[str, ...] = ()  # the cursors of the pages before this one ("-": the first)
    labels: tuple[tuple[str, str], ...] = ()
    errors: tuple[str, ...] = ()

    @classmethod
    def parse(cls, params: QueryParams) -> JobFilters:
        errors: list[str] = []
        states = []
        for value in params.getlist("state"):
            try:
                states.append(JobState(value.upper()))
            except ValueError:
                errors.append(f"unknown state {value!r}")
        dates: dict[str, date | None] = {}
        for name in ("from", "to"):
            raw = params.get(name, "").strip()
            dates[name] = None
            if raw:
                try:
                    dates[name] = date.fromisoformat(raw)
                except ValueError:
                    errors.append(f"{name}: {raw!r} is not a date (YYYY-MM-DD)")
        text = {}
        for name, longest in _TEXT_FIELDS.items():
            value = params.get(name, "").strip()
            if len(value) > longest:
                errors.append(f"{name}: at most {longest} characters")
            elif value:
                text[name] = value
        order = "oldest" if params.get("order") == "oldest" else "newest"
        try:
            limit = int(params.get("limit", "50"))
        except ValueError:
            limit = 50
        cursor = params.get("cursor") or None
        if cursor is not None:
            try:
                decode_cursor(cursor)
            except InvalidRequest:
                errors.append("the page cursor is not valid: showing the first page")
                cursor = None
        labels = []
        for item in text.get("label", "").replace(",", " ").split():
            key, sep, value = item.partition(":")
            if not sep or not key:
                errors.append(f"label: {item[:60]!r} is not KEY:VALUE")
            else:
                labels.append((key, value))
        trail = tuple(t for t in params.get("trail", "").split(",") if t)[-_TRAIL_PAGES:]
        return cls(
            states=tuple(dict.fromkeys(states)),
            created_from=dates["from"],
            created_to=dates["to"],
            text=text,
            order=order,
            limit=limit if limit in PAGE_SIZES else 50,
            cursor=cursor,
            sort=next((s for s in SORTS if s == params.get("sort")), "id"),
            trail=trail if cursor else (),
            labels=tuple(labels),
            errors=tuple(errors),
        )

    def query(self) -> JobQuery:
        def midnight(day: date) -> datetime:
            return datetime.combine(day, time(0), tzinfo=UTC)

        return JobQuery(
            states=self.states,
            schema_name=self.text.get("schema"),
            table_name=self.text.get("table"),
            queue=self.text.get("queue"),
            cluster=self.text.get("cluster"),
            owner=self.text.get("user"),
            labels=self.labels,
            created_after=midnight(self.created_from) if self.created_from else None,
            # The "to" day is included: everything before the next midnight (UTC).
            created_before=(
                midnight(self.created_to + timedelta(days=1)) if self.created_to else None
            ),
            text=self.text.get("q"),
            limit=self.limit,
            before_id=decode_cursor(self.cursor),
            oldest_first=self.order == "oldest",
        )

    def pairs(self, **changes: str | None) -> list[tuple[str, str]]:
        """The query string of this view as (name, value) pairs, with some values changed."""
        pairs: list[tuple[str, str]] = [("state", s.value) for s in self.states]
        if self.created_from:
            pairs.append(("from", self.created_from.isoformat()))
        if self.created_to:
            pairs.append(("to", self.created_to.isoformat()))
        pairs += list(self.text.items())
        values: dict[str, str | None] = {
            "order": self.order if self.order != "newest" else None,
            "limit": str(self.limit) if self.limit != 50 else None,
            "cursor": self.cursor,
            "trail": ",".join(self.trail) or None,
            "sort": self.sort if self.sort != "id" else None,
        }
        values.update(changes)
        pairs += [(name, value) for name, value in values.items() if value]
        return pairs

    def url(self, **changes: str | None) -> str:
        query = urlencode(self.pairs(**changes))
        return f"/ui?{query}" if query else "/ui"

    def next_url(self, next_before_id: int | None) -> str | None:
        if next_before_id is None:
            return None
        return self.url(
            cursor=encode_cursor(next_before_id), trail=",".join((*self.trail, self.cursor or "-"))
        )

    def previous_url(self) -> str | None:
        """The page before this one (None on the first page)."""
        if not self.cursor:
            return None
        if not self.trail:  # a bookmarked page: its previous pages are not known
            return self.url(cursor=None, trail=None)
        before = self.trail[-1]
        return self.url(cursor=None if before == "-" else before, trail=",".join(self.trail[:-1]))

    def sorted(self, jobs: list[Job]) -> list[Job]:
        """The page in the chosen order (by duration: longest first, running by elapsed time,
        jobs not started last)."""
        if self.sort != "duration":
            return jobs
        now = datetime.now(UTC)

        def length(job: Job) -> float:
            if job.duration_seconds is not None:
                return job.duration_seconds
            if job.started_at is not None:
                return (now - job.started_at).total_seconds()
            return -1.0

        return sorted(jobs, key=length, reverse=True)

    @property
    def active_count(self) -> int:
        return len(self.text) + bool(self.states) + bool(self.created_from or self.created_to)

    @property
    def active(self) -> bool:
        """Any filter set (beyond order and page size)."""
        return bool(self.states or self.created_from or self.created_to or self.text)


def any_active(jobs: list[Job]) -> bool:
    return any(job.state in ACTIVE_STATES for job in jobs)


def state_counts(jobs: list[Job]) -> list[tuple[str, int]]:
    """How many of the listed jobs are in each state, in the states' order."""
    counts = {state.value: 0 for state in JobState}
    for job in jobs:
        counts[job.state.value] += 1
    return [(state, count) for state, count in counts.items() if count]


def list_reason(job: Job) -> str:
    """What the list says beside the state: why it failed or was cancelled, or what it waits
    for."""
    if job.state == JobState.QUEUED and job.waiting_reason:
        return f"waiting for: {job.waiting_reason}"
    if job.state.terminal and job.state != JobState.SUCCEEDED and job.reason:
        return job.reason.strip().splitlines()[0] if job.reason.strip() else ""
    if job.cancel_requested and not job.state.terminal:
        return "cancel requested"
    return ""


def row_version(job: Job) -> str:
    """Changes whenever anything the row shows changes (except a running job's elapsed time,
    which ticks in the browser): the list patches only rows whose version moved."""
    progress = getattr(job, "progress", None)
    done = progress.get("tasks_done") if isinstance(progress, dict) else None
    parts = [job.state.value, job.attempts, job.cancel_requested, job.finished_at, done]
    parts += [job.waiting_reason, job.start_type, job.started_at]
    return format(zlib.crc32("|".join(str(part) for part in parts).encode()), "08x")


def history_server_link(base_url: str | None, job: Job) -> str | None:
    """The Spark History Server page of the job's application, when both are known."""
    if not base_url or not job.spark_app_id:
        return None
    return f"{base_url.rstrip('/')}/history/{quote(job.spark_app_id, safe='')}/jobs/"


def web_link(url: str | None) -> str | None:
    """A page chosen by a service, linked only when it is http(s)."""
    return url if url and urlsplit(url).scheme in ("http", "https") else None


def dataset_link(job: Job) -> str | None:
    if not job.spec.schema_name or not job.spec.table_name:
        return None
    return "/ui/history?" + urlencode(
        {"schema": job.spec.schema_name, "table": job.spec.table_name}
    )


def spec_json(job: Job) -> str:
    """The spec as shown to anyone (secret-looking values redacted), pretty-printed."""
    return json.dumps(public_spec(job), indent=2, sort_keys=True, default=str)


def runs_data(runs: list[Job], link_jobs: bool) -> list[dict[str, Any]]:
    """One entry per run, for the history chart (read by history.js)."""
    return [
        {
            "id": job.id,
            "name": job.name,
            "state": job.state.value,
            "created_at": job.created_at.isoformat(),
            "started_at": job.started_at.isoformat() if job.started_at else None,
            "duration_seconds": job.duration_seconds,
            "url": f"/ui/jobs/{job.id}" if link_jobs else None,
        }
        for job in runs
    ]


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} m"
    return f"{minutes} m {secs:02d} s"


def start_title(job: Job) -> str:
    """The tooltip of the job's warm/cold badge: what the start type means, or why cold."""
    if job.start_type == "warm":
        return "Ran on a warm driver: its JVM, SparkSession and Python worker were already up"
    if job.start_type == "cold":
        return f"Started cold: {job.start_note}" if job.start_note else "Started a new driver"
    return ""


def format_time(moment: datetime | None) -> str:
    if moment is None:
        return ""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def age(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return ""
    return format_duration(max(0.0, (now - moment).total_seconds()))


@dataclass(frozen=True)
class ScopeRow:
    """One line of the capacity table: limit, reserved and free per resource."""

    name: str
    cells: list[tuple[str, str, str]]  # (limit, reserved, free) for jobs, memory, cores


def scope_row(name: str, limit: Limit, reserved: Resources) -> ScopeRow:
    def cell(cap: int | None, held: int, memory: bool) -> tuple[str, str, str]:
        def shown(value: int) -> str:
            return format_memory(value) if memory else str(value)

        if cap is None:
            return ("unlimited", shown(held), "—")
        return (shown(cap), shown(held), shown(max(0, cap - held)))

    return ScopeRow(
        name,
        [
            cell(limit.max_running_jobs, reserved.jobs, False),
            cell(limit.max_memory_mb, reserved.memory_mb, True),
            cell(limit.max_cores, reserved.cores, False),
        ],
    )


@dataclass(frozen=True)
class WarmHeld:
    """What the warm drivers of one scope hold: counted in its reserved capacity."""

    name: str
    drivers: int
    held: str


def warm_held(drivers: list[WarmDriver]) -> list[WarmHeld]:
    """All clusters', then each cluster's, warm drivers and what they hold (none: empty)."""
    if not drivers:
        return []

    def held(group: list[WarmDriver]) -> WarmHeld:
        total = sum((d.held for d in group), Resources())
        words = f"{total.jobs} job slot{'' if total.jobs == 1 else 's'}, "
        words += f"{format_memory(total.memory_mb)}, {total.cores} cores"
        return WarmHeld("", len(group), words)

    rows = [replace(held(drivers), name="All clusters")]
    for cluster in sorted({d.cluster for d in drivers}):
        group = [d for d in drivers if d.cluster == cluster]
        rows.append(replace(held(group), name=f"Cluster {cluster}"))
    return rows
