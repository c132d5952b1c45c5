"""Output: rich tables and colour for people at a terminal, plain text otherwise.

``Output`` looks up ``sys.stdout``/``sys.stderr`` when it is created, so tests that
swap them (``capsys``) see everything. What goes in the tables comes from
:mod:`chidori.cli.views`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table
from rich.text import Text

from chidori.cli.client import ApiError, JsonObject, ServerUnreachable
from chidori.cli.views.cells import align, text
from chidori.cli.views.jobs import (
    EVENT_COLUMNS,
    LIST_COLUMNS,
    REASON_MIN_WIDTH,
    REASON_WIDTH,
    STATE_STYLES,
    detail_pairs,
    event_row,
    job_table,
    list_reason,
    list_row,
    shorten,
    state_text,
)
from chidori.cli.views.progress import SEPARATOR


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

    def warn(self, message: str) -> None:
        """A warning on stderr (yellow at a terminal)."""
        if self._err_colour:
            self._console(self.stderr).print(Text(f"warning: {message}", style="bold yellow"))
        else:
            self.err(f"warning: {message}")

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
        reason = job.get("reason")
        self.progress(job, [str(reason)] if reason else [], when)

    def progress(
        self, job: JsonObject, details: Sequence[str], when: datetime | None = None
    ) -> None:
        """One progress line on stderr: local time, job id, state, then ``a · b · c``."""
        when = when or datetime.now()
        state = str(job.get("state") or "?")
        head = f"{when.strftime('%H:%M:%S')}  job {job.get('id')}  "
        tail = f"  {SEPARATOR.join(details)}" if details else ""
        if self._err_colour:
            line = Text(head)
            line.append(state, style=STATE_STYLES.get(state, ""))
            line.append(tail)
            self._console(self.stderr).print(line)
        else:
            self.err(head + state + tail)

    # -- jobs ------------------------------------------------------------------------------

    def job_list(self, items: Sequence[JsonObject], *, wide: bool = False) -> None:
        """The jobs table; a last REASON column when a listed job waits or failed.

        Names are cut to ``NAME_WIDTH`` unless ``wide``. At a terminal the reasons get what
        width the other columns leave (`jobs show` has them whole) and are left out when too
        little is left; elsewhere they are cut to ``REASON_WIDTH`` unless ``wide``.
        """
        rows = [list_row(job, wide=wide) for job in items]
        reasons = [list_reason(job) for job in items]
        with_reasons = any(reasons)
        if not self.human:
            columns = [*LIST_COLUMNS, "REASON"] if with_reasons else list(LIST_COLUMNS)
            cells = [
                [*row, text(reason if wide else shorten(reason, REASON_WIDTH))]
                for row, reason in zip(rows, reasons, strict=True)
            ]
            for line in align([columns, *(cells if with_reasons else rows)]):
                self.out(line)
            return
        console = self._console(self.stdout)
        table = job_table(rows)
        if with_reasons:
            room = console.width - console.measure(table).maximum - 2
            if wide:
                table = job_table(rows, [text(r) for r in reasons])
            elif room >= REASON_MIN_WIDTH:
                table = job_table(rows, [text(r) for r in reasons], room)
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

    # -- generic views (admission, identity, admin) ----------------------------------------

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
