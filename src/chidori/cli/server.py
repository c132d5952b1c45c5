"""``chidori server``: start the API, UI, scheduler and driver host in this process."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from typing import Protocol, cast

from chidori.cli.args import ArgumentParser, positive_int
from chidori.cli.output import Output


class RunServer(Protocol):
    def __call__(self, config_file: Path | None, host: str | None, port: int | None) -> None: ...


def add_parser(subparsers: argparse._SubParsersAction[ArgumentParser]) -> None:
    p = subparsers.add_parser("server", help="run the Chidori server (API, UI, scheduler)")
    p.add_argument("--config", type=Path, metavar="FILE", help="config file (or $CHIDORI_CONFIG)")
    p.add_argument("--host", metavar="H", help="listen address (or $CHIDORI_HOST; 127.0.0.1)")
    p.add_argument("--port", type=positive_int, metavar="P", help="port (or $CHIDORI_PORT; 8080)")
    p.set_defaults(handler=run)


def run(ns: argparse.Namespace, out: Output) -> int:
    try:
        module = importlib.import_module("chidori.server")
    except ImportError as exc:
        out.error(f"cannot start the server: {exc}")
        return 1
    run_server = cast(RunServer, module.run_server)
    run_server(config_file=ns.config, host=ns.host, port=ns.port)
    return 0
