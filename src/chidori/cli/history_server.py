"""``chidori history-server``: run Spark's History Server over the event logs that hosted
drivers write (``$CHIDORI_HOME/spark-events`` by default), bound to loopback."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

from chidori.backends.spark_home import SparkNotFound, find_spark_home
from chidori.cli.args import ArgumentParser, positive_int
from chidori.cli.output import Output
from chidori.config import ConfigError, Settings, load_settings
from chidori.storage.blobs import open_blobs
from chidori.storage.logship import EventLogSync
from chidori.store.database import open_database

DEFAULT_PORT = 18080
HISTORY_SERVER_CLASS = "org.apache.spark.deploy.history.HistoryServer"


def add_parser(subparsers: argparse._SubParsersAction[ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "history-server",
        help="run Spark's History Server over the event logs of Chidori's drivers",
    )
    p.add_argument(
        "--port", type=positive_int, default=DEFAULT_PORT, metavar="P", help="UI port (18080)"
    )
    p.add_argument(
        "--log-dir",
        type=Path,
        metavar="DIR",
        help="event log directory (default: the server's, $CHIDORI_HOME/spark-events)",
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        metavar="H",
        help="address to bind (SPARK_LOCAL_IP; default 127.0.0.1)",
    )
    p.add_argument("--config", type=Path, metavar="FILE", help="config file (or $CHIDORI_CONFIG)")
    p.set_defaults(handler=run)


def properties(log_dir: Path, port: int) -> str:
    """The History Server's properties file."""
    return "\n".join(
        [
            f"spark.history.fs.logDirectory={log_dir.resolve().as_uri()}",
            f"spark.history.ui.port={port}",
            "spark.history.fs.update.interval=2s",
            "",
        ]
    )


def command(spark_home: Path, properties_file: Path) -> list[str]:
    return [
        str(spark_home / "bin" / "spark-class"),
        HISTORY_SERVER_CLASS,
        "--properties-file",
        str(properties_file),
    ]


def run(ns: argparse.Namespace, out: Output) -> int:
    try:
        settings = load_settings(os.environ, ns.config)
        spark_home = find_spark_home(os.environ)
    except (ConfigError, SparkNotFound) as exc:
        out.error(str(exc))
        return 1
    log_dir: Path = ns.log_dir or settings.event_log_dir or settings.home / "spark-events"
    log_dir.mkdir(parents=True, exist_ok=True)
    run_dir = settings.home / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    properties_file = run_dir / f"history-server-{ns.port}.properties"
    properties_file.write_text(properties(log_dir, ns.port))
    env = dict(os.environ)
    env["SPARK_HOME"] = str(spark_home)
    env["SPARK_LOCAL_IP"] = ns.host
    env.setdefault("SPARK_LOG_DIR", str(settings.home / "logs"))
    url = f"http://{ns.host}:{ns.port}"
    out.err(f"Spark History Server on {url} (event logs in {log_dir})")
    out.err(
        f"Configure the Chidori server with history_server_url: {url} in its config file, "
        f"or CHIDORI_HISTORY_SERVER_URL={url}"
    )
    sync = _shared_event_logs(settings, log_dir, out)
    print(url, flush=True)
    process = subprocess.Popen(command(spark_home, properties_file), env=env)

    def forward(signum: int, _frame: object) -> None:
        process.send_signal(signum)

    previous = signal.signal(signal.SIGTERM, forward)
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
        if sync is not None:
            sync.stop()
        sys.stdout.flush()


def _shared_event_logs(settings: Settings, log_dir: Path, out: Output) -> EventLogSync | None:
    """With shared storage, the event logs of every replica, copied into `log_dir` as they
    arrive (a first copy before the History Server starts)."""
    store = open_database(settings.database_url)
    try:
        blobs = open_blobs(settings.storage_url, store)
    except ValueError as exc:
        out.error(str(exc))
        return None
    if blobs is None or not blobs.shared:
        store.dispose()
        return None
    sync = EventLogSync(blobs, log_dir, up=False)
    copied = sync.sync()
    out.err(f"event logs of every replica from {blobs.describe()} ({copied} copied so far)")
    sync.start()
    return sync
