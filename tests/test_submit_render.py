"""The `chidori submit` command line a job page shows (`chidori.domain.submit_command`) is the
inverse of the CLI's parser: parsing the rendered command, with its uploads uploaded again,
gives the same spec back, for Python and Spark jobs, conf, arguments with spaces and quotes,
files, queue, priority, labels, datasets; and a re-run's spec is the same spec, labelled.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chidori.cli.submit import materialize
from chidori.cli.submit_flags import parse_submit
from chidori.domain.errors import InvalidRequest
from chidori.domain.spec import JobSpec
from chidori.domain.submit_command import (
    RERUN_LABEL,
    can_render,
    rerun_spec,
    submit_argv,
    submit_command,
    submitted_name,
)

SHA = "ab" * 32
OTHER_SHA = "cd" * 32


def upload(name: str, sha: str = SHA) -> str:
    return f"upload://{sha}/{name}"


# Files the uploads above stand for: the rendered command names them, the CLI reads them.
UPLOADED = {
    "pi.py": upload("pi.py"),
    "helpers.zip": upload("helpers.zip", OTHER_SHA),
    "lookup.csv": upload("lookup.csv"),
    "app.jar": upload("app.jar", OTHER_SHA),
    "env.tar.gz": upload("env.tar.gz"),
    "report.py": upload("report.py"),
}


@pytest.fixture
def in_folder_with_uploads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in UPLOADED:
        (tmp_path / name).write_text("x")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def parsed_again(spec: JobSpec) -> JobSpec:
    """What the CLI submits for the rendered command, its local files uploaded as before."""
    argv = shlex.split(submit_command(spec))
    assert argv[:2] == ["chidori", "submit"]
    plan = parse_submit(argv[2:])
    return JobSpec.model_validate(materialize(plan, lambda path: UPLOADED[path.name]))


SPECS: dict[str, dict[str, Any]] = {
    "plain python": {"kind": "python", "application": upload("report.py")},
    "spark with everything": {
        "name": "nightly 'orders' rollup",
        "application": upload("pi.py"),
        "args": ["100", "--date", "2026-12-07", "a b", 'say "hi"', "it's", "", "--wait", "$HOME"],
        "conf": {"spark.sql.shuffle.partitions": "8", "spark.app.note": "x=y z", "a.b": ""},
        "driver_memory": "2g",
        "driver_cores": 2,
        "executor_instances": 3,
        "executor_memory": "1536m",
        "executor_cores": 2,
        "py_files": [upload("helpers.zip", OTHER_SHA), "s3a://bucket/lib.zip"],
        "files": [upload("lookup.csv") + "#lookup", "hdfs://nn/data/ref.txt"],
        "archives": [upload("env.tar.gz") + "#env"],
        "cluster": "standalone",
        "queue": "etl",
        "priority": -5,
        "schema": "sales",
        "table": "orders daily",
        "labels": {"team": "data", "owner/contact": "ana@example.com", "empty": ""},
        "max_retries": 2,
        "rerun_lost": False,
        "timeout": "1h30m",
        "requirements": ["tabulate>=0.9", "requests[socks]==2.32.3; python_version>'3'"],
    },
    "jvm application": {
        "application": upload("app.jar", OTHER_SHA),
        "main_class": "com.example.Main",
        "jars": ["local:/opt/lib/dep.jar"],
        "args": ["--in", "s3a://bucket/in", "--out", "s3a://bucket/out"],
        "priority": 10,
    },
    "remote application": {"application": "https://example.com/jobs/pi.py", "args": ["10"]},
    "python with a dataset": {
        "kind": "python",
        "application": upload("report.py"),
        "schema": "ops",
        "table": "t",
        "files": [upload("lookup.csv")],
        "queue": "adhoc",
        "timeout": 90,
    },
}


@pytest.mark.parametrize("name", SPECS)
def test_parsing_the_rendered_command_gives_the_spec_back(
    name: str, in_folder_with_uploads: Path
) -> None:
    spec = JobSpec.model_validate(SPECS[name])
    assert parsed_again(spec) == spec


def test_only_what_differs_from_the_defaults_is_rendered() -> None:
    spec = JobSpec.model_validate({"application": upload("pi.py"), "args": ["10"]})
    assert submit_command(spec) == "chidori submit pi.py 10"
    python = JobSpec.model_validate(
        {"kind": "python", "application": "/srv/apps/x.py", "queue": "q"}
    )
    assert submit_argv(python) == ["--kind", "python", "--queue", "q", "/srv/apps/x.py"]


def test_arguments_are_shell_quoted() -> None:
    spec = JobSpec.model_validate(
        {"application": upload("pi.py"), "args": ["a b", "it's", "$(rm -rf ~)"], "name": "x y"}
    )
    assert submit_command(spec) == (
        "chidori submit --name 'x y' pi.py 'a b' 'it'\"'\"'s' '$(rm -rf ~)'"
    )


def test_uploads_are_shown_by_their_submitted_name() -> None:
    assert submitted_name(upload("pi.py")) == "pi.py"
    assert submitted_name(upload("lookup.csv") + "#alias") == "lookup.csv#alias"
    assert submitted_name("s3a://bucket/pi.py") == "s3a://bucket/pi.py"
    spec = JobSpec.model_validate(
        {"application": upload("pi.py"), "files": [upload("lookup.csv") + "#lookup"]}
    )
    assert SHA not in submit_command(spec)


def test_timeouts_are_whole_seconds_or_minutes_rounded_up() -> None:
    spec = JobSpec.model_validate({"application": upload("pi.py"), "timeout": 1.2})
    assert submit_argv(spec) == ["--timeout", "2", "pi.py"]
    for seconds, shown in ((90, "90"), (5400, "1h30m"), (86400 + 60, "1d1m"), (3600, "1h")):
        timed = spec.model_copy(update={"timeout": float(seconds)})
        assert submit_argv(timed)[:2] == ["--timeout", shown]


def test_sessions_and_connect_servers_have_no_command() -> None:
    session = JobSpec.model_validate({"kind": "session", "application": "chidori:session"})
    assert not can_render(session)
    with pytest.raises(ValueError, match="session"):
        submit_argv(session)
    with pytest.raises(InvalidRequest) as refused:
        rerun_spec(session, 4)
    assert [f.field for f in refused.value.fields] == ["kind"]


def test_a_rerun_is_the_same_spec_labelled_with_the_job_it_runs_again() -> None:
    spec = JobSpec.model_validate(SPECS["spark with everything"])
    again = rerun_spec(spec, 41)
    assert again.labels == {**spec.labels, RERUN_LABEL: "41"}
    assert again.model_copy(update={"labels": spec.labels}) == spec
    # A re-run of a re-run names the job it ran again, not the first one.
    assert rerun_spec(again, 42).labels[RERUN_LABEL] == "42"
    # A spec that has every label it may have is re-run without the label.
    full = spec.model_copy(update={"labels": {f"k{i}": "v" for i in range(64)}})
    assert rerun_spec(full, 43).labels == full.labels


def test_a_rerun_is_validated_as_new_input() -> None:
    # Stored before paths were refused a comma: it loads, but is not accepted again.
    stored = JobSpec.from_stored({"application": upload("pi.py"), "files": ["a.txt,b.txt"]})
    with pytest.raises(InvalidRequest) as refused:
        rerun_spec(stored, 7)
    assert refused.value.fields[0].field == "files.0"
    assert "comma" in refused.value.fields[0].message


# Text anywhere in an argument, conf value, label value or name: spaces, quotes, shell
# characters, unicode, newlines (never NUL, which the spec refuses).
TEXT = st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    args=st.lists(TEXT, max_size=6),
    conf=st.dictionaries(st.from_regex(r"\Aspark\.x\.[a-z0-9_.\-]{1,20}\Z"), TEXT, max_size=4),
    labels=st.dictionaries(st.from_regex(r"\A[a-z][a-z0-9_.\-/]{0,20}\Z"), TEXT, max_size=3),
    name=st.none() | TEXT.filter(lambda text: 1 <= len(text) <= 200),
    priority=st.integers(-1000, 1000),
)
def test_any_text_survives_the_round_trip(
    in_folder_with_uploads: Path,
    args: list[str],
    conf: dict[str, str],
    labels: dict[str, str],
    name: str | None,
    priority: int,
) -> None:
    labels = {k: v[:256] for k, v in labels.items()}
    spec = JobSpec.model_validate(
        {
            "application": upload("pi.py"),
            "args": args,
            "conf": conf,
            "labels": labels,
            "name": name,
            "priority": priority,
        }
    )
    assert parsed_again(spec) == spec
