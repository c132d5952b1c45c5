"""``chidori submit``'s command line: spark-submit's own flags plus Chidori's, turned into
a :class:`SubmitPlan` (the job spec, its local files still to upload, and how to run).

Parsing is split in two: a scanner walks the command line the way spark-submit does
(options, then APP, then everything else belongs to the application, however
flag-like), then argparse checks and converts the options part alone.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from chidori.cli.args import ArgumentParser, add_connection_flags, positive_int
from chidori.cli.client import JsonObject
from chidori.cli.errors import UsageError
from chidori.cli.exit_codes import help_table
from chidori.cli.properties_file import read_properties
from chidori.cli.requirements_file import read_requirements_file

# Options that take a value (after normalizing the short aliases).
VALUE_FLAGS = frozenset(
    {
        # spark-submit's own
        "--name", "--class", "--conf", "--driver-memory", "--driver-cores",
        "--executor-memory", "--executor-cores", "--num-executors", "--py-files", "--jars",
        "--files", "--archives", "--master", "--deploy-mode", "--properties-file",
        # Chidori's
        "--server", "--token", "--kind", "--cluster", "--queue", "--priority", "--schema",
        "--table", "--label", "--max-retries", "--timeout", "--idempotency-key", "--pip",
        "--requirements", "--environment",
    }
)  # fmt: skip
SWITCH_FLAGS = frozenset({"--wait", "--follow", "--json", "--verbose", "--help", "--no-rerun-lost"})
# Chidori's own flags (spark-submit has none of them): after APP they go to the application,
# which is spark-submit's rule, but most likely a mistake, so they draw a note.
CHIDORI_FLAGS = frozenset(
    {
        "--wait", "--follow", "--json", "--server", "--token", "--kind", "--cluster", "--queue",
        "--priority", "--schema", "--table", "--label", "--max-retries", "--timeout",
        "--idempotency-key", "--no-rerun-lost", "--pip", "--requirements", "--environment",
    }
)  # fmt: skip
SHORT_ALIASES = {"-c": "--conf", "-v": "--verbose", "-h": "--help"}

# spark-submit flags Chidori does not take: (takes a value, what to do instead).
UNSUPPORTED: dict[str, tuple[bool, str]] = {
    "--packages": (True, "use --conf spark.jars.packages=GROUP:ARTIFACT:VERSION[,...]"),
    "--repositories": (True, "packages come from the cluster's repositories (ask an admin)"),
    "--exclude-packages": (True, "use --conf spark.jars.excludes=GROUP:ARTIFACT[,...]"),
    "--driver-class-path": (True, "use --conf spark.driver.extraClassPath=PATH"),
    "--driver-library-path": (True, "use --conf spark.driver.extraLibraryPath=PATH"),
    "--driver-java-options": (True, "use --conf spark.driver.extraJavaOptions=OPTS"),
    "--proxy-user": (True, "jobs run as the user of the API token; impersonation is not offered"),
    "--principal": (True, "Kerberos is configured on the server's cluster, not per submission"),
    "--keytab": (True, "Kerberos is configured on the server's cluster, not per submission"),
    "--supervise": (False, "Chidori restarts failed drivers itself: use --max-retries N"),
    "--total-executor-cores": (
        True,
        "use --num-executors N with --executor-cores C",
    ),
    "--queue-name": (True, "use --queue NAME (a Chidori queue)"),
    "--kill": (True, "use `chidori jobs cancel ID`"),
    "--status": (True, "use `chidori jobs show ID`"),
    "--remote": (True, "use the Chidori Spark Connect gateway (sc://HOST:15002)"),
    "--usage-error": (False, "see `chidori submit --help`"),
}

LOCAL_MASTER = re.compile(r"^local(\[(\*|\d+)(,\d+)?\])?$")
DURATION = re.compile(r"^(\d+[dhms])+$")
URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]+:")
DEPENDENCY_FIELDS = (
    ("py_files", "--py-files"),
    ("jars", "--jars"),
    ("files", "--files"),
    ("archives", "--archives"),
)


@dataclass(frozen=True)
class LocalFile:
    """A file on this machine that is uploaded before submitting; ``fragment`` is ``#alias``."""

    path: Path
    fragment: str | None = None


Source = str | LocalFile


@dataclass
class SubmitPlan:
    """What ``chidori submit`` will do: the spec (minus uploads) and how to run."""

    application: Source
    dependencies: dict[str, list[Source]]
    spec: JsonObject
    server: str | None = None
    token: str | None = None
    idempotency_key: str | None = None
    wait: bool = False
    follow: bool = False
    json: bool = False
    notes: list[str] = field(default_factory=list)

    def local_files(self) -> list[LocalFile]:
        sources = [self.application, *(s for v in self.dependencies.values() for s in v)]
        return [s for s in sources if isinstance(s, LocalFile)]


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="chidori submit",
        usage="chidori submit [options] [--] APP [APP ARGS...]",
        description=(
            "Submit a Spark application (or a Python program with --kind python) to Chidori. "
            "Local files are uploaded first. Everything after APP is passed to the application "
            "(Chidori's own flags there draw a note; put -- before the application's arguments "
            "to say they are meant for it)."
        ),
        epilog=help_table(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    spark = parser.add_argument_group("spark-submit options")
    spark.add_argument("--name", help="a name for the job")
    spark.add_argument("--class", dest="main_class", metavar="CLASS", help="main class (JVM apps)")
    spark.add_argument(
        "--conf", "-c", action="append", default=[], metavar="K=V", help="a Spark property"
    )
    spark.add_argument("--driver-memory", metavar="MEM", help="e.g. 1g")
    spark.add_argument("--driver-cores", type=positive_int, metavar="N")
    spark.add_argument("--executor-memory", metavar="MEM", help="e.g. 2g")
    spark.add_argument("--executor-cores", type=positive_int, metavar="N")
    spark.add_argument("--num-executors", type=positive_int, metavar="N")
    for flag in ("--py-files", "--jars", "--files", "--archives"):
        spark.add_argument(
            flag, action="append", default=[], metavar="LIST", help="comma-separated"
        )
    spark.add_argument("--master", help="only local, local[*] or local[N]; otherwise use --cluster")
    spark.add_argument("--deploy-mode", help="accepted and ignored: Chidori hosts the driver")
    spark.add_argument("--properties-file", metavar="FILE", help="spark.* properties to add")
    spark.add_argument("--verbose", "-v", action="store_true", help=argparse.SUPPRESS)

    ours = parser.add_argument_group("Chidori options")
    add_connection_flags(ours)
    ours.add_argument("--kind", choices=("spark", "python"), default="spark")
    ours.add_argument("--cluster", metavar="NAME", help="a cluster configured on the server")
    ours.add_argument("--queue", metavar="NAME")
    ours.add_argument("--priority", type=int, metavar="N")
    ours.add_argument("--schema", metavar="S", help="the dataset this job writes: schema")
    ours.add_argument("--table", metavar="T", help="the dataset this job writes: table")
    ours.add_argument("--label", action="append", default=[], metavar="K=V")
    ours.add_argument("--max-retries", type=positive_int, metavar="N")
    ours.add_argument(
        "--pip",
        action="append",
        default=[],
        metavar="REQ",
        help="a Python package the job needs, PEP 508 (e.g. 'tabulate>=0.9'); repeatable. "
        "--packages stays Maven coordinates, as in spark-submit",
    )
    ours.add_argument(
        "--requirements",
        metavar="FILE",
        help="a pip requirements file (read here; -r includes allowed, index options refused)",
    )
    ours.add_argument(
        "--environment",
        metavar="NAME",
        help="start from a base environment an admin keeps (chidori envs base list)",
    )
    ours.add_argument(
        "--no-rerun-lost",
        action="store_true",
        help="if the driver's host is lost, fail the job instead of running it again "
        "(for work that must not run twice)",
    )
    ours.add_argument("--timeout", metavar="DURATION", help="e.g. 90 (seconds), 30m, 2h, 1h30m")
    ours.add_argument("--idempotency-key", metavar="KEY")
    ours.add_argument("--wait", action="store_true", help="wait for the end; exit with its outcome")
    ours.add_argument(
        "--follow", action="store_true", help="stream the driver log (implies --wait)"
    )
    return parser


def split_command_line(argv: Sequence[str]) -> tuple[list[str], str | None, list[str]]:
    """Split into (options in ``--flag=value`` form, APP, APP ARGS) the way spark-submit does.

    A ``--`` after APP is an argument of the application, as with spark-submit (which
    passes it on); a ``--`` just before APP (which spark-submit refuses) is dropped."""
    options: list[str] = []
    problems: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            if i + 1 >= len(argv):
                break
            return _checked(options, problems), argv[i + 1], list(argv[i + 2 :])
        if not arg.startswith("-") or arg == "-":
            return _checked(options, problems), arg, list(argv[i + 1 :])
        name, has_value, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        name = SHORT_ALIASES.get(name, name)
        if name in UNSUPPORTED:
            takes_value, advice = UNSUPPORTED[name]
            problems.append(f"{name} is not supported by chidori submit: {advice}")
            i += 2 if takes_value and not has_value else 1
            continue
        if name in VALUE_FLAGS:
            if not has_value:
                if i + 1 >= len(argv):
                    problems.append(f"{name} expects a value")
                    break
                value = argv[i + 1]
                i += 1
            options.append(f"{name}={value}")
        elif name in SWITCH_FLAGS:
            options.append(name if not has_value else arg)
            if name == "--help":
                return options, None, []
        else:
            problems.append(f"unknown option {name} (see `chidori submit --help`)")
        i += 1
    _checked(options, problems)
    return options, None, []


def flags_after_app(argv: Sequence[str], app_args: Sequence[str]) -> list[str]:
    """Chidori's own flags among the application's arguments, unless a ``--`` says they are
    the application's (``APP -- ARGS``, or ``-- APP ARGS``)."""
    app_index = len(argv) - len(app_args) - 1
    if (
        app_index > 0
        and argv[app_index - 1] == "--"
        and (
            app_index < 2
            or SHORT_ALIASES.get(argv[app_index - 2], argv[app_index - 2]) not in VALUE_FLAGS
        )
    ):
        return []
    found: list[str] = []
    for arg in app_args:
        if arg == "--":
            break
        name = arg.partition("=")[0]
        if name in CHIDORI_FLAGS and name not in found:
            found.append(name)
    return found


def after_app_note(flags: Sequence[str], app: str) -> str:
    names = ", ".join(flags)
    verb = "goes" if len(flags) == 1 else "go"
    return (
        f"{names} after APP {verb} to the application as its arguments (spark-submit's rule); "
        f"for Chidori, put {'it' if len(flags) == 1 else 'them'} before APP "
        f"(chidori submit {flags[0]} ... {app}); to pass {'it' if len(flags) == 1 else 'them'} "
        f"to the application without this note, put -- before the application's arguments "
        f"({app} -- ARGS; the application receives the --)"
    )


def _checked(options: list[str], problems: list[str]) -> list[str]:
    if problems:
        raise UsageError(*problems)
    return options


def parse_submit(argv: Sequence[str]) -> SubmitPlan:
    """Turn ``chidori submit`` arguments into a plan; raises :class:`UsageError`."""
    options, app, app_args = split_command_line(argv)
    parser = build_parser()
    ns = parser.parse_args(options)  # --help exits here
    if app is None:
        raise UsageError(
            "missing APP: the application file to run", hint="see `chidori submit --help`"
        )

    problems: list[str] = []
    notes: list[str] = []
    misplaced = flags_after_app(argv, app_args)
    if misplaced:
        notes.append(after_app_note(misplaced, app))
    spec: JsonObject = {"kind": ns.kind}

    cluster: str | None = ns.cluster
    if ns.master is not None:
        if not LOCAL_MASTER.match(ns.master):
            problems.append(
                f"--master {ns.master} is not supported: Chidori submits to clusters configured "
                "on the server; use --cluster NAME instead (or --master local[*] for local mode)"
            )
        elif cluster is None:
            cluster = "local"
    if ns.deploy_mode is not None:
        if ns.deploy_mode in ("client", "cluster"):
            notes.append(
                f"--deploy-mode {ns.deploy_mode} ignored: Chidori always hosts the driver itself"
            )
        else:
            problems.append(f"--deploy-mode must be client or cluster, not {ns.deploy_mode!r}")

    conf: dict[str, str] = {}
    if ns.properties_file is not None:
        try:
            props = read_properties(Path(ns.properties_file))
        except OSError as exc:
            problems.append(f"cannot read --properties-file {ns.properties_file}: {exc.strerror}")
        else:
            conf.update({k: v for k, v in props.items() if k.startswith("spark.")})
    for item in ns.conf:
        key, value = _pair(item, "--conf", problems)
        if key is not None:
            conf[key] = value
    _flags_from_conf(ns, conf, problems)
    labels: dict[str, str] = {}
    for item in ns.label:
        key, value = _pair(item, "--label", problems)
        if key is not None:
            labels[key] = value

    requirements: list[str] = []
    if ns.requirements is not None:
        requirements += read_requirements_file(Path(ns.requirements), problems)
    requirements += [r.strip() for r in ns.pip if r.strip()]

    timeout: int | str | None = None
    if ns.timeout is not None:
        raw = ns.timeout.strip()
        if raw.isdigit():
            timeout = int(raw)
        elif DURATION.match(raw):
            timeout = raw
        else:
            problems.append(f"--timeout expects a duration like 90, 30m, 2h or 1h30m, not {raw!r}")

    application = _source(app, "APP", problems, allow_fragment=False)
    dependencies: dict[str, list[Source]] = {}
    for key, flag in DEPENDENCY_FIELDS:
        entries = [e.strip() for item in getattr(ns, key) for e in item.split(",") if e.strip()]
        if entries:
            dependencies[key] = [_source(e, flag, problems, allow_fragment=True) for e in entries]

    if problems:
        raise UsageError(*problems)

    optional: dict[str, Any] = {
        "name": ns.name,
        "main_class": ns.main_class,
        "args": app_args or None,
        "conf": conf or None,
        "driver_memory": ns.driver_memory,
        "driver_cores": ns.driver_cores,
        "executor_instances": ns.num_executors,
        "executor_memory": ns.executor_memory,
        "executor_cores": ns.executor_cores,
        "cluster": cluster,
        "queue": ns.queue,
        "priority": ns.priority,
        "schema": ns.schema,
        "table": ns.table,
        "labels": labels or None,
        "max_retries": ns.max_retries,
        "rerun_lost": False if ns.no_rerun_lost else None,
        "timeout": timeout,
        "requirements": requirements or None,
        "environment": ns.environment,
    }
    spec.update({k: v for k, v in optional.items() if v is not None})
    return SubmitPlan(
        application=application,
        dependencies=dependencies,
        spec=spec,
        server=ns.server,
        token=ns.token,
        idempotency_key=ns.idempotency_key,
        wait=ns.wait or ns.follow,
        follow=ns.follow,
        json=ns.json,
        notes=notes,
    )


def _pair(item: str, flag: str, problems: list[str]) -> tuple[str | None, str]:
    key, sep, value = item.partition("=")
    key = key.strip()
    if not sep or not key:
        problems.append(f"{flag} expects KEY=VALUE, got {item!r}")
        return None, ""
    return key, value


def _source(entry: str, flag: str, problems: list[str], *, allow_fragment: bool) -> Source:
    """A remote URI stays as it is; a local path must exist and becomes a :class:`LocalFile`."""
    if entry.startswith("upload://"):
        return entry
    path_text, fragment = entry, None
    if URL_SCHEME.match(entry):
        parsed = urlparse(entry)
        if parsed.scheme != "file":
            return entry  # hdfs://, s3a://, https://, local:/..., ...
        path_text, fragment = unquote(parsed.path), parsed.fragment or None
    elif allow_fragment and "#" in entry and not Path(entry).expanduser().exists():
        path_text, _, fragment = entry.rpartition("#")
    if fragment and not allow_fragment:
        problems.append(f"{flag} {entry}: a #alias is only allowed on --files/--archives entries")
        return entry
    path = Path(path_text).expanduser()
    if not path.exists():
        problems.append(
            f"{flag} {path_text}: no such local file (a remote file needs a URL scheme)"
        )
    elif not path.is_file():
        problems.append(f"{flag} {path_text}: not a regular file")
    return LocalFile(path, fragment or None)


# spark-submit reads these from --conf (or the properties file) when its flag is not given;
# Chidori's job spec has a field for each, and refuses them in conf (the policy caps and
# admission count the fields), so they are moved onto the flags here.
CONF_FLAGS = {
    "spark.driver.memory": "driver_memory",
    "spark.driver.cores": "driver_cores",
    "spark.executor.memory": "executor_memory",
    "spark.executor.cores": "executor_cores",
    "spark.executor.instances": "num_executors",
}
CONF_FILE_LISTS = {
    "spark.submit.pyFiles": "py_files",
    "spark.jars": "jars",
    "spark.files": "files",
    "spark.archives": "archives",
}
_INTEGER_FLAGS = {"driver_cores", "executor_cores", "num_executors"}


def _flags_from_conf(ns: argparse.Namespace, conf: dict[str, str], problems: list[str]) -> None:
    """Move resource and file-list keys of `conf` onto their flags (a flag given wins)."""
    for key in list(conf):
        lowered = key.lower()
        flag = next((f for k, f in CONF_FLAGS.items() if k.lower() == lowered), None)
        if flag is not None:
            value = conf.pop(key).strip()
            if getattr(ns, flag) is None:
                if flag in _INTEGER_FLAGS:
                    if not value.isdigit():
                        problems.append(f"--conf {key} expects a whole number, not {value!r}")
                        continue
                    setattr(ns, flag, int(value))
                else:
                    setattr(ns, flag, value)
            continue
        files = next((f for k, f in CONF_FILE_LISTS.items() if k.lower() == lowered), None)
        if files is not None:
            value = conf.pop(key)
            if value.strip():
                setattr(ns, files, [*getattr(ns, files), value])
