"""argparse helpers shared by the subcommands."""

from __future__ import annotations

import argparse
from typing import NoReturn

from chidori.cli.client import ChidoriClient
from chidori.cli.errors import UsageError
from chidori.cli.settings import resolve

NONE_WORDS = frozenset({"none", "null", "unlimited"})


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


def token_id(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a token id is a number, got {value!r}") from None


def int_or_none(value: str) -> int | None:
    """A whole number, or ``none`` (no limit) which becomes ``None``."""
    if value.strip().lower() in NONE_WORDS:
        return None
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a whole number or 'none', got {value!r}"
        ) from None


def count_or_none(value: str) -> int | None:
    """A whole number >= 0, or ``none`` (no limit) which becomes ``None``."""
    number = int_or_none(value)
    if number is not None and number < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0 or 'none', got {value!r}")
    return number


def positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
    if not number > 0 or number == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {value!r}")
    return number


def whole_number(value: str) -> int:
    """A whole number, negative allowed (priorities)."""
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None


def size_or_none(value: str) -> str | None:
    """A memory size such as ``4g`` (checked by the server), or ``none`` → ``None``."""
    stripped = value.strip()
    if stripped.lower() in NONE_WORDS:
        return None
    if not stripped:
        raise argparse.ArgumentTypeError("expected a size such as 4g, or 'none'")
    return stripped


def comma_list(value: str) -> list[str]:
    """``a,b,c`` → ``["a", "b", "c"]`` (blanks dropped; ``""`` is the empty list)."""
    return [part.strip() for part in value.split(",") if part.strip()]


def connect(ns: argparse.Namespace) -> ChidoriClient:
    """A client for the server and token the ``--server``/``--token`` flags (or env) name."""
    settings = resolve(ns.server, ns.token)
    return ChidoriClient(settings.url, settings.token)


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
