"""Errors the CLI reports to the user without a traceback."""

from __future__ import annotations


class UsageError(Exception):
    """Bad command-line input: one message line per problem; exit status 2."""

    def __init__(self, *lines: str, hint: str | None = None) -> None:
        super().__init__("; ".join(lines))
        self.lines: tuple[str, ...] = lines
        self.hint = hint
