"""The ``chidori`` command line: ``main(argv)`` returns the exit status.

Exit statuses: one table in :mod:`chidori.cli.exit_codes` (0 success, 1 job FAILED, 2 usage,
3 CANCELLED, 4 timed out, 5 auth, 6 not found, 7 server unreachable or 5xx, 8 CLI bug).

Modules:

- commands: ``server``, ``history_server``, ``jobs`` (list/show/cancel/logs and the wait and
  follow loops), ``submit`` (upload, submit, wait), ``admission`` (queues, limits), ``admin``
  (users, policy, warm pools, audit), ``tokens`` (whoami, tokens).
- ``submit_flags``: spark-submit's flags plus Chidori's, turned into a ``SubmitPlan``;
  ``properties_file``: the ``--properties-file`` reader.
- plumbing: ``client`` (the REST client), ``settings`` (server URL and token), ``args``
  (argparse types and shared flags), ``errors`` (usage errors), ``exit_codes`` (the statuses).
- output: ``output`` (``Output``: tables and colour at a terminal, plain text otherwise) and
  ``views/`` (the columns, rows and pairs each command shows).
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence

from chidori import __version__
from chidori.cli import (
    admin,
    admission,
    dataset_history,
    environments,
    history_server,
    jobs,
    kubernetes,
    open_job,
    server,
    submit,
    tokens,
)
from chidori.cli.args import ArgumentParser
from chidori.cli.client import ApiError, ServerUnreachable
from chidori.cli.errors import UsageError
from chidori.cli.exit_codes import ExitCode, api_error_code, help_table
from chidori.cli.output import Output

__all__ = ["main"]


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="chidori",
        description="Chidori: a control plane for Spark jobs.",
        epilog=help_table(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"chidori {__version__}")
    subparsers = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=ArgumentParser
    )
    server.add_parser(subparsers)
    history_server.add_parser(subparsers)
    # Parsed by submit_flags.parse_submit (spark-submit style); listed here for --help.
    subparsers.add_parser(
        "submit",
        help="submit an application: chidori submit [options] APP [APP ARGS]",
        add_help=False,
    )
    jobs.add_parsers(subparsers)
    open_job.add_parser(subparsers)
    dataset_history.add_parser(subparsers)
    admission.add_parsers(subparsers)
    tokens.add_parsers(subparsers)
    admin.add_parsers(subparsers)
    environments.add_parsers(subparsers)
    kubernetes.add_parser(subparsers)
    return parser


def _exit_status(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return ExitCode.USAGE


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``chidori`` command; returns its exit status (never raises for user errors)."""
    args = list(sys.argv[1:] if argv is None else argv)
    return int(_run(args, Output()))


def _run(args: list[str], out: Output) -> int:
    try:
        if args and args[0] == "submit":
            return submit.run(args[1:], out)
        ns = build_parser().parse_args(args)
        status: int = ns.handler(ns, out)
        return status
    except SystemExit as exc:  # --help, --version
        return _exit_status(exc.code)
    except UsageError as exc:
        for line in exc.lines:
            out.error(line)
        if exc.hint:
            out.err(f"({exc.hint})")
        return ExitCode.USAGE
    except ApiError as exc:
        out.api_error(exc)
        if exc.status == 401:
            out.err("  (give a token with --token or CHIDORI_TOKEN)")
        return api_error_code(exc)
    except ServerUnreachable as exc:
        out.unreachable(exc)
        return ExitCode.SERVER
    except KeyboardInterrupt:
        out.err("interrupted")
        return ExitCode.INTERRUPTED
    except BrokenPipeError:
        return ExitCode.BROKEN_PIPE
    except Exception as exc:  # never a traceback unless asked for
        if os.environ.get("CHIDORI_DEBUG"):
            traceback.print_exc()
        out.error(f"unexpected {type(exc).__name__}: {exc} (set CHIDORI_DEBUG=1 for details)")
        return ExitCode.INTERNAL
