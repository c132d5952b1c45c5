"""`chidori submit` argument parsing: spark-submit flags and Chidori's, to the job spec."""

from __future__ import annotations

from pathlib import Path

import pytest

from chidori.cli import main
from chidori.cli.errors import UsageError
from chidori.cli.properties_file import read_properties
from chidori.cli.submit import materialize
from chidori.cli.submit_flags import UNSUPPORTED, LocalFile, SubmitPlan, parse_submit


def fake_upload(path: Path) -> str:
    return f"upload://sha-{path.name}/{path.name}"


def spec_of(argv: list[str]) -> dict[str, object]:
    return materialize(parse_submit(argv), fake_upload)


@pytest.fixture
def app(tmp_path: Path) -> Path:
    path = tmp_path / "etl.py"
    path.write_text("print('hi')\n")
    return path


def test_every_flag_maps_to_its_spec_field(tmp_path: Path, app: Path) -> None:
    dep = tmp_path / "dep.zip"
    dep.write_bytes(b"zip")
    jar = tmp_path / "lib.jar"
    jar.write_bytes(b"jar")
    data = tmp_path / "data.csv"
    data.write_text("a,b\n")
    env = tmp_path / "env.tar.gz"
    env.write_bytes(b"tgz")
    plan = parse_submit(
        [
            "--name", "nightly", "--class", "org.example.Main",
            "--conf", "spark.sql.shuffle.partitions=8", "--conf=spark.ui.enabled=false",
            "-c", "spark.x=a=b",
            "--driver-memory", "2g", "--driver-cores", "2",
            "--executor-memory", "4g", "--executor-cores", "3", "--num-executors", "5",
            "--py-files", f"{dep},hdfs://nn/x.py", "--jars", f"{jar}", "--jars", "s3a://b/y.jar",
            "--files", str(data), "--archives", f"{env}#environment",
            "--master", "local[4]", "--deploy-mode", "client",
            "--server", "http://example:9000", "--token", "tok",
            "--kind", "spark", "--cluster", "big", "--queue", "etl", "--priority", "7",
            "--schema", "sales", "--table", "orders",
            "--label", "team=data", "--label", "tier=gold",
            "--max-retries", "2", "--timeout", "30m", "--idempotency-key", "k-1",
            "--wait", "--json",
            str(app), "2024-01-01", "--verbose",
        ]
    )  # fmt: skip
    assert plan.server == "http://example:9000"
    assert plan.token == "tok"
    assert plan.idempotency_key == "k-1"
    assert plan.wait
    assert not plan.follow
    assert plan.json
    assert plan.notes == ["--deploy-mode client ignored: Chidori always hosts the driver itself"]
    assert materialize(plan, fake_upload) == {
        "kind": "spark",
        "application": "upload://sha-etl.py/etl.py",
        "name": "nightly",
        "main_class": "org.example.Main",
        "args": ["2024-01-01", "--verbose"],
        "conf": {
            "spark.sql.shuffle.partitions": "8",
            "spark.ui.enabled": "false",
            "spark.x": "a=b",
        },
        "driver_memory": "2g",
        "driver_cores": 2,
        "executor_instances": 5,
        "executor_memory": "4g",
        "executor_cores": 3,
        "py_files": ["upload://sha-dep.zip/dep.zip", "hdfs://nn/x.py"],
        "jars": ["upload://sha-lib.jar/lib.jar", "s3a://b/y.jar"],
        "files": ["upload://sha-data.csv/data.csv"],
        "archives": ["upload://sha-env.tar.gz/env.tar.gz#environment"],
        "cluster": "big",
        "queue": "etl",
        "priority": 7,
        "schema": "sales",
        "table": "orders",
        "labels": {"team": "data", "tier": "gold"},
        "max_retries": 2,
        "timeout": "30m",
    }


def test_minimal_submit_omits_everything_not_given(app: Path) -> None:
    assert spec_of([str(app)]) == {"kind": "spark", "application": "upload://sha-etl.py/etl.py"}


def test_app_arguments_that_look_like_flags_belong_to_the_app(app: Path) -> None:
    spec = spec_of(["--queue", "q", str(app), "--name", "x", "--wait", "--", "-c", "k=v"])
    assert spec["args"] == ["--name", "x", "--wait", "--", "-c", "k=v"]
    assert "name" not in spec
    plan = parse_submit(["--", str(app), "--follow"])
    assert not plan.follow
    assert materialize(plan, fake_upload)["args"] == ["--follow"]


def test_flag_values_may_start_with_a_dash(app: Path) -> None:
    spec = spec_of(["--name", "-odd-", "--conf", "spark.driver.extraJavaOptions=-Xss4m", str(app)])
    assert spec["name"] == "-odd-"
    assert spec["conf"] == {"spark.driver.extraJavaOptions": "-Xss4m"}


def test_remote_application_is_not_uploaded() -> None:
    for uri in ("s3a://bucket/app.py", "https://x/app.jar", "upload://abc/app.py", "local:/a.jar"):
        plan = parse_submit([uri])
        assert plan.local_files() == []
        assert materialize(plan, fake_upload)["application"] == uri


def test_file_url_application_is_uploaded(app: Path) -> None:
    plan = parse_submit([app.as_uri()])
    assert plan.application == LocalFile(app)


def test_missing_local_application_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"APP .*nope\.py: no such local file"):
        parse_submit([str(tmp_path / "nope.py")])


def test_missing_local_dependency_is_a_usage_error(app: Path) -> None:
    with pytest.raises(UsageError) as info:
        parse_submit(["--jars", "missing.jar,also-missing.jar", str(app)])
    assert len(info.value.lines) == 2
    assert info.value.lines[0].startswith("--jars missing.jar")


def test_missing_app_prints_error_sends_nothing_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # nothing listens on port 9; a request would report "cannot reach" instead
    code = main(["submit", "--server", "http://127.0.0.1:9", str(tmp_path / "nope.py")])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    assert "nope.py: no such local file" in captured.err
    assert "cannot reach" not in captured.err


def test_archive_alias_is_kept_after_upload_and_same_file_uploads_once(
    tmp_path: Path, app: Path
) -> None:
    env = tmp_path / "env.tar.gz"
    env.write_bytes(b"x")
    uploads: list[Path] = []

    def upload(path: Path) -> str:
        uploads.append(path)
        return f"upload://h/{path.name}"

    plan = parse_submit(
        ["--archives", f"{env}#py,{env}#other,hdfs://nn/a.zip#z", "--files", f"{env}", str(app)]
    )
    spec = materialize(plan, upload)
    assert spec["archives"] == [
        "upload://h/env.tar.gz#py",
        "upload://h/env.tar.gz#other",
        "hdfs://nn/a.zip#z",
    ]
    assert spec["files"] == ["upload://h/env.tar.gz"]
    assert uploads == [app, env]


def test_local_master_maps_to_local_cluster_unless_cluster_given(app: Path) -> None:
    for master in ("local", "local[*]", "local[8]"):
        assert spec_of(["--master", master, str(app)])["cluster"] == "local"
    assert spec_of(["--master", "local[2]", "--cluster", "big", str(app)])["cluster"] == "big"


@pytest.mark.parametrize("master", ["yarn", "spark://h:7077", "k8s://https://k:6443"])
def test_non_local_master_is_rejected_pointing_at_cluster(app: Path, master: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_submit(["--master", master, str(app)])
    assert f"--master {master} is not supported" in info.value.lines[0]
    assert "--cluster NAME" in info.value.lines[0]


def test_deploy_mode_is_noted_or_rejected(app: Path) -> None:
    assert parse_submit(["--deploy-mode", "cluster", str(app)]).notes
    with pytest.raises(UsageError, match="client or cluster"):
        parse_submit(["--deploy-mode", "sideways", str(app)])


@pytest.mark.parametrize("flag", sorted(UNSUPPORTED))
def test_unsupported_spark_submit_flags_are_rejected_by_name(app: Path, flag: str) -> None:
    takes_value, _ = UNSUPPORTED[flag]
    argv = [flag, "value", str(app)] if takes_value else [flag, str(app)]
    with pytest.raises(UsageError) as info:
        parse_submit(argv)
    assert info.value.lines[0].startswith(f"{flag} is not supported by chidori submit: ")


def test_each_unsupported_flag_gets_its_own_line_with_advice(app: Path) -> None:
    with pytest.raises(UsageError) as info:
        parse_submit(["--packages=a:b:1", "--supervise", "--driver-java-options", "-Dx", str(app)])
    lines = info.value.lines
    assert len(lines) == 3
    assert "spark.jars.packages" in lines[0]
    assert "--max-retries" in lines[1]
    assert "spark.driver.extraJavaOptions" in lines[2]


def test_unknown_option_is_rejected(app: Path) -> None:
    with pytest.raises(UsageError, match="unknown option --frobnicate"):
        parse_submit(["--frobnicate", str(app)])


def test_properties_file_adds_spark_keys_and_flags_win(tmp_path: Path, app: Path) -> None:
    props = tmp_path / "spark.properties"
    props.write_text(
        "# a comment\n"
        "! another comment\n"
        "\n"
        "spark.executor.memory   4g\n"
        "spark.sql.shuffle.partitions=100\n"
        "spark.app.name : from file \n"
        "spark.long = a,\\\n"
        "    b\n"
        "other.key=ignored\n"
    )
    spec = spec_of(
        ["--properties-file", str(props), "--conf", "spark.sql.shuffle.partitions=8", str(app)]
    )
    assert spec["conf"] == {
        "spark.sql.shuffle.partitions": "8",
        "spark.app.name": "from file",
        "spark.long": "a,b",
    }
    assert spec["executor_memory"] == "4g"  # a resource key becomes its spec field


def test_resource_and_file_keys_in_conf_move_onto_their_fields(tmp_path: Path, app: Path) -> None:
    """spark-submit reads them from conf when the flag is not given (the flag wins); Chidori's
    server refuses them in conf, so the CLI moves them onto the spec's fields."""
    dep = tmp_path / "dep.py"
    dep.write_text("X = 1\n")
    spec = spec_of(
        [
            "--executor-memory", "2g",
            "--conf", "spark.executor.memory=8g",
            "--conf", "spark.executor.instances=3",
            "--conf", "SPARK.DRIVER.CORES=2",
            "--conf", f"spark.submit.pyFiles={dep}",
            "--conf", "spark.jars=hdfs:///libs/a.jar,hdfs:///libs/b.jar",
            str(app),
        ]
    )  # fmt: skip
    assert "conf" not in spec
    assert spec["executor_memory"] == "2g"
    assert spec["executor_instances"] == 3 and spec["driver_cores"] == 2
    assert spec["py_files"] == ["upload://sha-dep.py/dep.py"]
    assert spec["jars"] == ["hdfs:///libs/a.jar", "hdfs:///libs/b.jar"]
    with pytest.raises(UsageError, match="whole number"):
        parse_submit(["--conf", "spark.executor.instances=many", str(app)])


def test_read_properties_keeps_escaped_separators(tmp_path: Path) -> None:
    props = tmp_path / "p"
    props.write_text("spark.a\\=b=c\nspark.empty\n")
    assert read_properties(props) == {"spark.a=b": "c", "spark.empty": ""}


def test_unreadable_properties_file_is_a_usage_error(tmp_path: Path, app: Path) -> None:
    with pytest.raises(UsageError, match="cannot read --properties-file"):
        parse_submit(["--properties-file", str(tmp_path / "none"), str(app)])


@pytest.mark.parametrize(
    ("value", "expected"), [("90", 90), ("30m", "30m"), ("1h30m", "1h30m"), ("2d", "2d")]
)
def test_timeout_accepts_seconds_and_durations(app: Path, value: str, expected: object) -> None:
    assert spec_of(["--timeout", value, str(app)])["timeout"] == expected


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--timeout", "soon", "s3a://b/app.py"], "--timeout expects a duration"),
        (["--conf", "novalue", "s3a://b/app.py"], "--conf expects KEY=VALUE"),
        (["--label", "=x", "s3a://b/app.py"], "--label expects KEY=VALUE"),
        (["--priority", "high"], "invalid int value"),
        (["--num-executors", "-1"], "expected a number >= 0"),
        (["--kind", "scala"], "invalid choice"),
        (["--name"], "--name expects a value"),
        ([], "missing APP"),
    ],
)
def test_bad_values_are_usage_errors(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_submit(argv)


def test_kind_python_and_follow_implies_wait(app: Path) -> None:
    plan = parse_submit(["--kind", "python", "--follow", str(app)])
    assert plan.spec["kind"] == "python"
    assert plan.follow
    assert plan.wait


def test_help_exits_zero_listing_spark_flags(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["submit", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--executor-memory" in out
    assert "--idempotency-key" in out


def test_usage_error_from_main_is_one_line_per_problem(
    app: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["submit", "--packages", "x:y:1", "--keytab", "k", str(app)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("error: --packages is not supported")
    assert err[1].startswith("error: --keytab is not supported")
    assert len(err) == 2


def test_plan_local_files_lists_uploads(tmp_path: Path, app: Path) -> None:
    jar = tmp_path / "a.jar"
    jar.write_bytes(b"")
    plan: SubmitPlan = parse_submit(["--jars", f"{jar},hdfs://x/b.jar", str(app)])
    assert plan.local_files() == [LocalFile(app), LocalFile(jar)]
