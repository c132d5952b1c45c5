"""Output: rich tables and colour for people at a terminal, plain text otherwise.

``Output`` looks up ``sys.stdout``/``sys.stderr`` when it is created, so tests that
swap them (``capsys``) see everything.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table
from rich.text import Text

from chidori.cli.client import ApiError, JsonObject, ServerUnreachable

STATE_STYLES = {
    "QUEUED": "yellow",
    "ADMITTED": "cyan",
    "RUNNING": "bold blue",
    "SUCCEEDED": "bold green",
    "FAILED": "bold red",
    "CANCELLED": "magenta",
    "LOST": "red",
}

LIST_COLUMNS = (
    "ID", "NAME", "STATE", "KIND", "CLUSTER", "QUEUE", "TABLE", "CREATED", "DURATION", "ATTEMPTS",
)  # fmt: skip


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Output:
    """Where and how the CLI writes. ``human`` defaults to "stdout is a terminal"."""

    def __init__(
        self,
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
        human: bool | None = None,
    ) -> None:
        self.stdout = sys.stdout if stdout is None else stdout
        self.stderr = sys.stderr if stderr is None else stderr
        self.human = _isatty(self.stdout) if human is None else human
        self._err_colour = _isatty(self.stderr)

    # -- raw writes ------------------------------------------------------------------------

    def out(self, text: str = "") -> None:
        self.stdout.write(text + "\n")
        self.stdout.flush()

    def write(self, text: str) -> None:
        """Write without adding a newline (log streams)."""
        self.stdout.write(text)
        self.stdout.flush()

    def err(self, text: str) -> None:
        self.stderr.write(text + "\n")
        self.stderr.flush()

    def json(self, obj: Any) -> None:
        self.out(json.dumps(obj, indent=2, ensure_ascii=False))

    def _console(self, stream: TextIO) -> Console:
        return Console(file=stream, highlight=False, soft_wrap=False)

    # -- messages on stderr ----------------------------------------------------------------

    def error(self, message: str) -> None:
        self.err(f"error: {message}")

    def note(self, message: str) -> None:
        self.err(f"note: {message}")

    def api_error(self, exc: ApiError) -> None:
        self.error(exc.message)
        for item in exc.fields:
            line = f"{item.field or '(request)'}: {item.message}"
            if line != exc.message:  # the message is already this field's error
                self.err(f"  {line}")

    def unreachable(self, exc: ServerUnreachable) -> None:
        self.error(
            f"cannot reach the Chidori server at {exc.url} ({exc.detail}); "
            "start one with `chidori server` or point CHIDORI_URL (or --server) at it"
        )

    def transition(self, job: JsonObject, when: datetime | None = None) -> None:
        """One progress line on stderr: local time, job id, state, reason."""
        when = when or datetime.now()
        state = str(job.get("state") or "?")
        parts = [when.strftime("%H:%M:%S"), f"job {job.get('id')}", state]
        reason = job.get("reason")
        if reason:
            parts.append(str(reason))
        if self._err_colour:
            line = Text("  ".join(parts[:2]) + "  ")
            line.append(state, style=STATE_STYLES.get(state, ""))
            if reason:
                line.append(f"  {reason}")
            self._console(self.stderr).print(line)
        else:
            self.err("  ".join(parts))

    # -- jobs ------------------------------------------------------------------------------

    def job_list(self, items: Sequence[JsonObject]) -> None:
        """The jobs table; a last WAITING column only when a listed job waits for capacity.

        At a terminal the column gets what width the others leave (reasons are cut, `jobs
        show` has them whole) and is left out when too little is left.
        """
        waiting = any(job.get("waiting_reason") for job in items)
        rows = [list_row(job) for job in items]
        reasons = [text(job.get("waiting_reason")) for job in items]
        if not self.human:
            columns = [*LIST_COLUMNS, "WAITING"] if waiting else list(LIST_COLUMNS)
            cells = [[*row, reason] for row, reason in zip(rows, reasons, strict=True)]
            for line in align([columns, *(cells if waiting else rows)]):
                self.out(line)
            return
        console = self._console(self.stdout)
        table = _job_table(rows)
        if waiting:
            room = console.width - console.measure(table).maximum - 2
            if room >= WAITING_MIN_WIDTH:
                table = _job_table(rows, reasons, room)
        console.print(table)

    def job_detail(self, job: JsonObject, events: Sequence[JsonObject]) -> None:
        pairs = detail_pairs(job)
        event_rows = [event_row(e) for e in events]
        if self.human:
            console = self._console(self.stdout)
            grid = Table.grid(padding=(0, 2))
            grid.add_column(style="bold")
            grid.add_column()
            for key, value in pairs:
                grid.add_row(key, state_text(value) if key == "state" else Text(value))
            console.print(grid)
            console.print()
            table = Table(title="events", title_justify="left", box=None, header_style="bold")
            for column in EVENT_COLUMNS:
                table.add_column(column)
            for row in event_rows:
                cells: list[str | Text] = list(row)
                cells[2] = state_text(row[2])
                table.add_row(*cells)
            console.print(table)
        else:
            width = max(len(key) for key, _ in pairs)
            for key, value in pairs:
                self.out(f"{key + ':':<{width + 1}}  {value}")
            self.out()
            self.out("events:")
            for line in align([list(EVENT_COLUMNS), *event_rows]):
                self.out("  " + line)

    # -- generic views (identity and admin) ------------------------------------------------

    def table(
        self,
        columns: Sequence[str],
        rows: Sequence[Sequence[str]],
        *,
        right: Iterable[str] = (),
        styles: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        """Rows under a header: a rich table at a terminal, aligned plain text otherwise.

        ``right`` names right-justified columns; ``styles[column][value]`` colours a cell.
        """
        if not self.human:
            for line in align([list(columns), *rows]):
                self.out(line)
            return
        right_set = set(right)
        styles = styles or {}
        table = Table(box=None, header_style="bold", pad_edge=False)
        for column in columns:
            table.add_column(column, justify="right" if column in right_set else "left")
        for row in rows:
            table.add_row(
                *(
                    Text(cell, style=styles.get(column, {}).get(cell, ""))
                    for column, cell in zip(columns, row, strict=True)
                )
            )
        self._console(self.stdout).print(table)

    def pairs(self, pairs: Sequence[tuple[str, str]]) -> None:
        """``key: value`` lines (a bold-keyed grid at a terminal)."""
        if not pairs:
            return
        if self.human:
            grid = Table.grid(padding=(0, 2))
            grid.add_column(style="bold")
            grid.add_column()
            for key, value in pairs:
                grid.add_row(Text(key), Text(value))  # Text: no markup in values
            self._console(self.stdout).print(grid)
            return
        width = max(len(key) for key, _ in pairs)
        for key, value in pairs:
            self.out(f"{key + ':':<{width + 1}}  {value}")

    def warn(self, message: str) -> None:
        """A warning on stderr (yellow at a terminal)."""
        if self._err_colour:
            self._console(self.stderr).print(Text(f"warning: {message}", style="bold yellow"))
        else:
            self.err(f"warning: {message}")


EVENT_COLUMNS = ("TIME", "TYPE", "STATE", "ATTEMPT", "ACTOR", "REASON")
WAITING_MIN_WIDTH = 16


def _job_table(
    rows: Sequence[Sequence[str]], reasons: Sequence[str] | None = None, width: int = 0
) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in LIST_COLUMNS:
        table.add_column(column, justify="right" if column in ("ID", "ATTEMPTS") else "left")
    if reasons is not None:
        table.add_column("WAITING", no_wrap=True, overflow="ellipsis", max_width=width)
    for i, row in enumerate(rows):
        cells = [Text(cell) for cell in row]  # Text: no markup in names or reasons
        cells[2] = state_text(row[2])
        if reasons is not None:
            cells.append(Text(reasons[i]))
        table.add_row(*cells)
    return table


def state_text(state: str) -> Text:
    return Text(state, style=STATE_STYLES.get(state, ""))


def align(rows: Iterable[Sequence[str]]) -> list[str]:
    """Plain text columns separated by two spaces; the last column is not padded."""
    materialized = [list(r) for r in rows]
    if not materialized:
        return []
    widths = [max(len(r[i]) for r in materialized) for i in range(len(materialized[0]))]
    return [
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip()
        for row in materialized
    ]


def text(value: Any) -> str:
    if value is None or value == "" or value == [] or value == {}:
        return "-"
    return str(value)


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def format_time(value: Any) -> str:
    """ISO 8601 from the server, shown in local time (``-`` when absent)."""
    parsed = parse_time(value)
    if parsed is None:
        return text(value)
    return parsed.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.1f}s"
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def job_duration(job: JsonObject, now: datetime | None = None) -> float | None:
    """``duration_seconds``, or the time running so far for a job not yet finished."""
    value = job.get("duration_seconds")
    if isinstance(value, int | float):
        return float(value)
    started = parse_time(job.get("started_at"))
    if started is None or job.get("finished_at"):
        return None
    return max(0.0, ((now or datetime.now(UTC)) - started).total_seconds())


def dataset(job: JsonObject) -> str:
    schema, table = job.get("schema"), job.get("table")
    if schema and table:
        return f"{schema}.{table}"
    return text(schema or table)


def list_row(job: JsonObject) -> list[str]:
    return [
        text(job.get("id")),
        text(job.get("name")),
        text(job.get("state")),
        text(job.get("kind")),
        text(job.get("cluster")),
        text(job.get("queue")),
        dataset(job),
        format_time(job.get("created_at")),
        format_duration(job_duration(job)),
        text(job.get("attempts")),
    ]


def detail_pairs(job: JsonObject) -> list[tuple[str, str]]:
    raw_spec = job.get("spec")
    spec: JsonObject = raw_spec if isinstance(raw_spec, dict) else {}
    labels = job.get("labels") or {}
    label_text = (
        ", ".join(f"{k}={v}" for k, v in labels.items())
        if isinstance(labels, dict)
        else text(labels)
    )
    args = spec.get("args")
    waiting = job.get("waiting_reason")
    return [
        ("id", text(job.get("id"))),
        ("name", text(job.get("name"))),
        ("state", text(job.get("state"))),
        *([("waiting", str(waiting))] if waiting else []),
        ("reason", text(job.get("reason"))),
        ("kind", text(job.get("kind"))),
        ("user", text(job.get("user"))),
        ("cluster", text(job.get("cluster"))),
        ("queue", text(job.get("queue"))),
        ("priority", text(job.get("priority"))),
        ("demand", demand_text(job.get("demand"))),
        ("table", dataset(job)),
        ("labels", text(label_text)),
        ("application", text(spec.get("application"))),
        ("main class", text(spec.get("main_class"))),
        ("args", " ".join(str(a) for a in args) if isinstance(args, list) and args else "-"),
        ("created", format_time(job.get("created_at"))),
        ("started", format_time(job.get("started_at"))),
        ("finished", format_time(job.get("finished_at"))),
        ("duration", format_duration(job_duration(job))),
        *start_pairs(job),
        ("attempts", text(job.get("attempts"))),
        ("spark app id", text(job.get("spark_app_id"))),
        ("exit code", text(job.get("exit_code"))),
    ]


def start_text(job: JsonObject) -> str:
    """``warm``, ``cold (why)`` or ``-`` (not started, or an older server)."""
    kind, note = job.get("start_type"), job.get("start_note")
    if not kind:
        return "-"
    return f"{kind} ({note})" if note else str(kind)


def seconds_text(value: Any) -> str:
    return format_duration(float(value)) if isinstance(value, int | float) else "-"


def start_pairs(job: JsonObject) -> list[tuple[str, str]]:
    """How the job started and where its time went: queue, driver start-up, the run."""
    return [
        ("start", start_text(job)),
        ("queue wait", seconds_text(job.get("queue_wait_seconds"))),
        ("start-up", seconds_text(job.get("startup_seconds"))),
        ("run time", seconds_text(job.get("run_seconds"))),
    ]


def event_row(event: JsonObject) -> list[str]:
    return [
        format_time(event.get("time")),
        text(event.get("type")),
        text(event.get("state")),
        text(event.get("attempt")),
        text(event.get("actor")),
        text(event.get("reason")),
    ]


# -- identity and admin --------------------------------------------------------------------

USER_COLUMNS = ("NAME", "ROLE", "TEAM", "CLUSTERS", "QUEUES", "STATUS", "CREATED")
TOKEN_COLUMNS = ("ID", "USER", "NAME", "PREFIX", "CREATED", "EXPIRES", "STATUS")
AUDIT_COLUMNS = ("ID", "TIME", "ACTOR", "ACTION", "TARGET", "SOURCE", "DETAIL")
STATUS_STYLES = {
    "STATUS": {"active": "green", "disabled": "red", "revoked": "red", "expired": "yellow"},
    "ROLE": {"admin": "bold"},
}


def name_list(value: Any) -> str:
    """Allowed clusters/queues: ``null`` means all of them, ``[]`` none."""
    if value is None:
        return "(all)"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) if value else "(none)"
    return text(value)


def user_row(user: JsonObject) -> list[str]:
    return [
        text(user.get("name")),
        text(user.get("role")),
        text(user.get("team")),
        name_list(user.get("clusters")),
        name_list(user.get("queues")),
        "disabled" if user.get("disabled") else "active",
        format_time(user.get("created_at")),
    ]


def user_pairs(user: JsonObject) -> list[tuple[str, str]]:
    row = user_row(user)
    return [(column.lower(), cell) for column, cell in zip(USER_COLUMNS, row, strict=True)]


def whoami_pairs(who: JsonObject) -> list[tuple[str, str]]:
    return [(key, text(who.get(key))) for key in ("name", "role", "team")]


def token_status(token: JsonObject, now: datetime | None = None) -> str:
    if token.get("revoked_at"):
        return "revoked"
    expires = parse_time(token.get("expires_at"))
    if expires is not None and expires <= (now or datetime.now(UTC)):
        return "expired"
    return "active"


def token_row(token: JsonObject, now: datetime | None = None) -> list[str]:
    return [
        text(token.get("id")),
        text(token.get("user")),
        text(token.get("name")),
        text(token.get("prefix")),
        format_time(token.get("created_at")),
        format_time(token.get("expires_at")),
        token_status(token, now),
    ]


def compact(value: Any) -> str:
    """A short one-line form of an audit ``detail``: ``k=v k2=v2``."""
    if value is None or value == {}:
        return "-"
    if isinstance(value, dict):
        return " ".join(
            f"{k}={v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)}"
            for k, v in value.items()
        )
    return json.dumps(value, ensure_ascii=False)


def audit_row(entry: JsonObject) -> list[str]:
    return [
        text(entry.get("id")),
        format_time(entry.get("time")),
        text(entry.get("actor")),
        text(entry.get("action")),
        text(entry.get("target")),
        text(entry.get("source")),
        compact(entry.get("detail")),
    ]


POLICY_LIMITS = (
    ("max_driver_memory", "max driver memory"),
    ("max_driver_cores", "max driver cores"),
    ("max_executor_memory", "max executor memory"),
    ("max_executor_cores", "max executor cores"),
    ("max_executor_instances", "max executor instances"),
)


def policy_pairs(policy: JsonObject) -> list[tuple[str, str]]:
    pairs = [
        (label, "none" if policy.get(key) is None else str(policy.get(key)))
        for key, label in POLICY_LIMITS
    ]
    for key, label in (("forbidden_conf", "forbidden conf"), ("allowed_schemes", "schemes")):
        value = policy.get(key)
        pairs.append((label, ", ".join(str(v) for v in value) if value else "(none)"))
    exempt = policy.get("admins_exempt")
    pairs.append(("admins exempt", yes_no(exempt) if isinstance(exempt, bool) else text(exempt)))
    return pairs


def yes_no(value: bool) -> str:
    return "yes" if value else "no"


# -- admission -----------------------------------------------------------------------------

QUEUE_COLUMNS = ("NAME", "PRIORITY", "WEIGHT", "QUOTA", "DEPTH", "RUNNING", "OLDEST WAIT")
CAPACITY_COLUMNS = ("SCOPE", "JOBS", "MEMORY", "CORES")
LIMIT_COLUMNS = ("SCOPE", "MAX RUNNING JOBS", "MAX MEMORY", "MAX CORES")
LIMIT_KEYS = ("max_running_jobs", "max_memory", "max_cores")
UNLIMITED = "unlimited"


def limit_text(value: Any) -> str:
    """A cap as admins write it; ``null`` is no cap."""
    return UNLIMITED if value is None else str(value)


def number_text(value: Any) -> str:
    """``3.0`` → ``3``, ``0.5`` → ``0.5``; anything else as :func:`text`."""
    if isinstance(value, float):
        return f"{value:g}"
    return text(value)


def plural(count: Any, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def quota_text(doc: Mapping[str, Any]) -> str:
    """A queue's quota in one cell: ``4 jobs, 32g, 16 cores`` (only the caps it has)."""
    parts = []
    if doc.get("max_running_jobs") is not None:
        parts.append(plural(doc["max_running_jobs"], "job"))
    if doc.get("max_memory") is not None:
        parts.append(str(doc["max_memory"]))
    if doc.get("max_cores") is not None:
        parts.append(plural(doc["max_cores"], "core"))
    return ", ".join(parts) if parts else UNLIMITED


def queue_row(queue: JsonObject) -> list[str]:
    wait = queue.get("oldest_wait_seconds")
    return [
        text(queue.get("name")),
        text(queue.get("priority")),
        number_text(queue.get("weight")),
        quota_text(queue),
        text(queue.get("depth")),
        text(queue.get("running")),
        format_duration(float(wait)) if isinstance(wait, int | float) else "-",
    ]


def queue_pairs(queue: JsonObject, name: str | None = None) -> list[tuple[str, str]]:
    """One queue's settings (and, from ``GET /queues``, its depth and running jobs)."""
    pairs = [
        ("name", text(queue.get("name") or name)),
        ("priority", text(queue.get("priority"))),
        ("weight", number_text(queue.get("weight"))),
        ("max running jobs", limit_text(queue.get("max_running_jobs"))),
        ("max memory", limit_text(queue.get("max_memory"))),
        ("max cores", limit_text(queue.get("max_cores"))),
    ]
    for key in ("depth", "running"):
        if key in queue:
            pairs.append((key, text(queue.get(key))))
    return pairs


def _held(reserved: Any, limit: Any, free: Any) -> str:
    """``2 of 8 (6 free)``, or ``2 (unlimited)`` without a cap."""
    if limit is None:
        return f"{text(reserved)} ({UNLIMITED})"
    return f"{text(reserved)} of {limit} ({text(free)} free)"


def capacity_row(scope: str, doc: Mapping[str, Any]) -> list[str]:
    limits = _mapping(doc.get("limits"))
    reserved = _mapping(doc.get("reserved"))
    free = _mapping(doc.get("free"))
    return [
        scope,
        _held(reserved.get("jobs"), limits.get("max_running_jobs"), free.get("jobs")),
        _held(reserved.get("memory"), limits.get("max_memory"), free.get("memory")),
        _held(reserved.get("cores"), limits.get("max_cores"), free.get("cores")),
    ]


def capacity_rows(capacity: JsonObject) -> list[list[str]]:
    """The global row, then one per cluster (by name)."""
    rows = [capacity_row("global", capacity)]
    clusters = _mapping(capacity.get("clusters"))
    for name in sorted(clusters):
        rows.append(capacity_row(f"cluster {name}", _mapping(clusters[name])))
    return rows


def limits_rows(limits: JsonObject) -> list[list[str]]:
    """Global limits, then each cluster's (by name); ``unlimited`` for no cap."""
    rows = [["global", *(limit_text(limits.get(key)) for key in LIMIT_KEYS)]]
    clusters = _mapping(limits.get("clusters"))
    for name in sorted(clusters):
        doc = _mapping(clusters[name])
        rows.append([f"cluster {name}", *(limit_text(doc.get(key)) for key in LIMIT_KEYS)])
    return rows


def demand_text(demand: Any) -> str:
    """A job's whole gang, driver plus executors: ``3g, 5 cores``."""
    if not isinstance(demand, dict) or not demand:
        return "-"
    parts = []
    if demand.get("memory") is not None:
        parts.append(str(demand["memory"]))
    if demand.get("cores") is not None:
        parts.append(plural(demand["cores"], "core"))
    return ", ".join(parts) if parts else "-"


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


# -- warm pools ----------------------------------------------------------------------------

WARM_POOL_COLUMNS = ("CLUSTER", "SIZE", "CONFIGURED", "DRIVER SIZE", "DRIVERS")
WARM_DRIVER_COLUMNS = (
    "CLUSTER", "DRIVER", "STATE", "SERVER", "PID", "RESERVED", "IN USE", "CREATED",
)  # fmt: skip
WARM_STATES = ("idle", "starting", "retiring")
WARM_STYLES = {"STATE": {"idle": "green", "starting": "yellow", "retiring": "magenta"}}


def warm_shape(memory: Any, cores: Any) -> str:
    """One warm driver's size: ``1g, 1 core``."""
    return f"{text(memory)}, {plural(cores, 'core')}"


def warm_drivers(pool: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    drivers = pool.get("drivers")
    return [d for d in drivers if isinstance(d, dict)] if isinstance(drivers, list) else []


def warm_count_text(pool: Mapping[str, Any]) -> str:
    """``1 idle, 1 starting`` (states in a fixed order), or ``none``."""
    states = [str(d.get("state")) for d in warm_drivers(pool)]
    order = [*WARM_STATES, *sorted(set(states) - set(WARM_STATES))]
    parts = [f"{states.count(s)} {s}" for s in order if s in states]
    return ", ".join(parts) if parts else "none"


def warm_pool_row(pool: JsonObject) -> list[str]:
    return [
        text(pool.get("cluster")),
        text(pool.get("size")),
        text(pool.get("configured_size")),
        warm_shape(pool.get("driver_memory"), pool.get("driver_cores")),
        warm_count_text(pool),
    ]


def warm_driver_rows(pools: Sequence[JsonObject]) -> list[list[str]]:
    """Every warm driver of every pool, by cluster then creation."""
    rows = []
    for pool in pools:
        for driver in warm_drivers(pool):
            rows.append(
                [
                    text(pool.get("cluster")),
                    text(driver.get("id")),
                    text(driver.get("state")),
                    text(driver.get("server_id")),
                    text(driver.get("pid")),
                    warm_shape(driver.get("memory"), driver.get("cores")),
                    text(driver.get("memory_in_use")),
                    format_time(driver.get("created_at")),
                ]
            )
    return rows


def warm_pool_pairs(pool: JsonObject) -> list[tuple[str, str]]:
    """One pool in detail (the answer of ``admin warm-pool set|reset``)."""
    conf = _mapping(pool.get("conf"))
    size, configured = pool.get("size"), pool.get("configured_size")
    configured_text = text(configured) if size == configured else f"{text(configured)} (overridden)"
    return [
        ("cluster", text(pool.get("cluster"))),
        ("size", f"{text(size)} per server" + (" (off)" if size == 0 else "")),
        ("configured size", configured_text),
        ("driver size", warm_shape(pool.get("driver_memory"), pool.get("driver_cores"))),
        ("conf", ", ".join(f"{k}={v}" for k, v in sorted(conf.items())) or "-"),
        ("drivers", warm_count_text(pool)),
    ]
