"""argparse helpers shared by the subcommands."""

from __future__ import annotations

import argparse
from typing import NoReturn

from chidori.cli.errors import UsageError


class ArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser that raises :class:`UsageError` instead of exiting on bad input."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message, hint=f"see `{self.prog} --help`")


def positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value!r}")
    return number


def job_id(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a job id is a number, got {value!r}") from None


def add_connection_flags(parser: argparse._ActionsContainer, *, json: bool = True) -> None:
    parser.add_argument(
        "--server",
        metavar="URL",
        help="server URL (default: $CHIDORI_URL or http://127.0.0.1:8080)",
    )
    parser.add_argument(
        "--token",
        metavar="T",
        help="API token (default: $CHIDORI_TOKEN or $CHIDORI_HOME/admin.token)",
    )
    if json:
        parser.add_argument("--json", action="store_true", help="print the raw JSON answer")
