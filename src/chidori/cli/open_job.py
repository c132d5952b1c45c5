"""``chidori open JOB``: print the job's page in the web UI (and open a browser only with
``--browser`` where a display exists)."""

from __future__ import annotations

import argparse
import os
import sys
import webbrowser

from chidori.cli.args import ArgumentParser, add_connection_flags, job_id
from chidori.cli.client import ChidoriClient
from chidori.cli.exit_codes import ExitCode
from chidori.cli.output import Output
from chidori.cli.progress_lines import ui_url
from chidori.cli.settings import resolve


def add_parser(subparsers: argparse._SubParsersAction[ArgumentParser]) -> None:
    p = subparsers.add_parser("open", help="print a job's web UI address (--browser: open it)")
    p.add_argument("id", type=job_id, metavar="JOB")
    add_connection_flags(p, json=False)
    p.add_argument("--browser", action="store_true", help="also open it in a browser")
    p.set_defaults(handler=open_job)


def has_display() -> bool:
    """A browser can show something: macOS, Windows, or an X/Wayland display."""
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def open_job(ns: argparse.Namespace, out: Output) -> int:
    settings = resolve(ns.server, ns.token)
    with ChidoriClient(settings.url, settings.token) as client:
        client.get_job(ns.id)  # an unknown job or a bad token: say so, not a dead link
    url = ui_url(settings.url, ns.id)
    out.out(url)
    if ns.browser:
        if not has_display():
            out.note("no display to open a browser on: the address is above")
        elif not webbrowser.open(url):
            out.note("no browser could be started: the address is above")
    return ExitCode.OK
