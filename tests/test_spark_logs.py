"""Reading the application id and the failure out of real Spark 4.3 driver logs.

The files under tests/data/spark_logs are trimmed excerpts of real spark-submit output (stdout
and stderr merged) captured on pyspark 4.3.0:

- local.log: examples/pi.py in local[2], defaults (plain log lines; no app id anywhere).
- local_eventlog.log / local_eventlog_json.log: the same with event logging on, in the default
  plain layout and with spark.log.structuredLogging.enabled=true (JSON lines).
- standalone.log: examples/pi.py on a standalone master in client mode.
- fail.log: examples/fail.py (ValueError traceback, exit code 1).
- analysis_exception.log: examples/wordcount.py with a missing input (AnalysisException).
- missing_app.log: spark-submit of a .py file that does not exist (exit code 2).
- missing_jar.log: spark-submit --class of a jar that does not exist (exit code 101).
- bad_master.log: spark-submit --master bogus://x (exit code 1).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chidori.backends.spark_logs import (
    MAX_SUMMARY_CHARS,
    find_application_id,
    summarize_failure,
)

LOGS = Path(__file__).parent / "data" / "spark_logs"


def log(name: str) -> str:
    return (LOGS / name).read_text()


# --- application id -------------------------------------------------------------------------


def test_local_mode_without_event_log_prints_no_application_id() -> None:
    assert find_application_id(log("local.log")) is None


def test_local_mode_app_id_comes_from_the_rolling_event_log_line() -> None:
    assert find_application_id(log("local_eventlog.log")) == "local-1795862547526"


def test_local_mode_app_id_is_found_in_structured_json_logs() -> None:
    text = log("local_eventlog_json.log")
    assert json.loads(text.splitlines()[2])["logger"] == "SparkContext"  # really JSON lines
    assert find_application_id(text) == "local-1795862561633"


def test_standalone_app_id_comes_from_the_connected_line() -> None:
    assert find_application_id(log("standalone.log")) == "app-20261128104516-0000"


@pytest.mark.parametrize(
    ("line", "app_id"),
    [
        # Non-rolling event log (spark.eventLog.rolling.enabled=false), with and without codec.
        (
            "26/11/28 10:42:27 INFO SingleEventLogFileWriter: Logging events to "
            "file:/tmp/evlog/local-1795862547526.inprogress",
            "local-1795862547526",
        ),
        (
            "26/11/28 10:42:27 INFO SingleEventLogFileWriter: Logging events to "
            "file:/tmp/evlog/app-20261128104516-0003.zstd.inprogress",
            "app-20261128104516-0003",
        ),
        # YARN (Client.scala).
        (
            "26/11/28 10:42:27 INFO Client: Submitted application application_1732790000000_0042",
            "application_1732790000000_0042",
        ),
        (
            "26/11/28 10:42:28 INFO Client: Application report for "
            "application_1732790000000_0042 (state: ACCEPTED)",
            "application_1732790000000_0042",
        ),
        # Kubernetes (LoggingPodStatusWatcher) and its event log in client mode.
        (
            "26/11/28 10:42:28 INFO LoggingPodStatusWatcherImpl: Application status for "
            "spark-0123456789abcdef0123456789abcdef (phase: Running)",
            "spark-0123456789abcdef0123456789abcdef",
        ),
        (
            "26/11/28 10:42:28 INFO RollingEventLogFilesWriter: Logging events to "
            "s3a://logs/eventlog_v2_spark-0123456789abcdef0123456789abcdef/"
            "events_1_spark-0123456789abcdef0123456789abcdef.zstd",
            "spark-0123456789abcdef0123456789abcdef",
        ),
    ],
)
def test_app_id_lines_of_other_modes(line: str, app_id: str) -> None:
    assert find_application_id(f"noise\n{line}\nmore noise\n") == app_id


def test_temp_dirs_and_submitted_application_name_are_not_app_ids() -> None:
    text = (
        "26/11/28 10:43:13 INFO SparkContext: Submitted application: PythonPi\n"
        "26/11/28 10:43:13 INFO DiskBlockManager: Created local directory at "
        "/tmp/blockmgr-5a4f75e2-4aa1-49b8-919a-4ebb0b69e772\n"
        "/tmp/spark-b28075bc-9623-4260-82a1-ba0615f7f8ca/userFiles-ae525805\n"
    )
    assert find_application_id(text) is None


def test_failed_runs_without_app_id_give_none() -> None:
    for name in ("fail.log", "missing_app.log", "missing_jar.log", "bad_master.log"):
        assert find_application_id(log(name)) is None, name


# --- failure summary ------------------------------------------------------------------------


def test_python_traceback_gives_its_exception_line() -> None:
    assert (
        summarize_failure(log("fail.log"))
        == "ValueError: fail.py failed on purpose: the input table is empty"
    )


def test_python_exception_wins_over_java_stack_traces_in_warnings() -> None:
    summary = summarize_failure(log("analysis_exception.log"))
    assert summary is not None
    assert summary.startswith(
        "pyspark.errors.exceptions.captured.AnalysisException: [PATH_NOT_FOUND] "
        "Path does not exist: file:/tmp/spark-"
    )
    assert summary.endswith("no_such_words.txt. SQLSTATE: 42K03")


def test_missing_application_file_gives_the_interpreter_complaint() -> None:
    assert summarize_failure(log("missing_app.log")) == (
        "/work/main/.venv/bin/python: can't open file "
        "'/work/main/examples/does_not_exist.py': [Errno 2] No such file or directory"
    )


def test_spark_submit_error_line() -> None:
    assert summarize_failure(log("missing_jar.log")) == (
        "Error: Failed to load class org.example.Nope."
    )


def test_jvm_main_thread_exception_line() -> None:
    assert summarize_failure(log("bad_master.log")) == (
        'Exception in thread "main" org.apache.spark.SparkException: '
        "Master must either be yarn or start with spark, k8s, or local"
    )


def test_successful_runs_have_nothing_to_summarize() -> None:
    for name in ("local.log", "local_eventlog.log", "local_eventlog_json.log", "standalone.log"):
        assert summarize_failure(log(name)) is None, name


def test_py4j_java_error_includes_the_java_cause() -> None:
    text = (
        "Traceback (most recent call last):\n"
        '  File "/app/job.py", line 3, in <module>\n'
        "    sc._jvm.Foo.bar()\n"
        "py4j.protocol.Py4JJavaError: An error occurred while calling z:Foo.bar.\n"
        ": java.lang.IllegalStateException: bar is broken\n"
        "\tat Foo.bar(Foo.java:1)\n"
    )
    assert summarize_failure(text) == (
        "py4j.protocol.Py4JJavaError: An error occurred while calling z:Foo.bar. "
        "java.lang.IllegalStateException: bar is broken"
    )


def test_last_of_chained_tracebacks_wins() -> None:
    text = (
        "Traceback (most recent call last):\n"
        '  File "a.py", line 1, in <module>\n'
        "KeyError: 'x'\n"
        "\n"
        "During handling of the above exception, another exception occurred:\n"
        "\n"
        "Traceback (most recent call last):\n"
        '  File "a.py", line 3, in <module>\n'
        "RuntimeError: lookup failed\n"
    )
    assert summarize_failure(text) == "RuntimeError: lookup failed"


def test_error_log_line_is_the_last_resort_in_plain_and_json_layouts() -> None:
    plain = (
        "26/11/28 10:45:16 INFO StandaloneAppClient$ClientEndpoint: Connecting to master\n"
        "26/11/28 10:46:16 ERROR StandaloneSchedulerBackend: Application has been killed. "
        "Reason: All masters are unresponsive! Giving up.\n"
    )
    expected = (
        "StandaloneSchedulerBackend: Application has been killed. "
        "Reason: All masters are unresponsive! Giving up."
    )
    assert summarize_failure(plain) == expected
    record = {
        "ts": "2026-11-28T10:46:16.000Z",
        "level": "ERROR",
        "msg": "Application has been killed. Reason: All masters are unresponsive! Giving up.",
        "logger": "StandaloneSchedulerBackend",
    }
    assert summarize_failure(json.dumps(record) + "\n") == expected


def test_summary_is_one_line_of_bounded_length() -> None:
    text = "Traceback (most recent call last):\nValueError: " + "x" * 1000 + "\n"
    summary = summarize_failure(text)
    assert summary is not None
    assert len(summary) <= MAX_SUMMARY_CHARS
    assert "\n" not in summary
    assert summary.endswith("...")


def test_empty_log_has_no_summary_and_no_app_id() -> None:
    assert summarize_failure("") is None
    assert find_application_id("") is None


def test_an_id_cut_off_at_the_end_of_a_partly_written_log_is_not_taken() -> None:
    line = (
        "26/11/28 10:42:27 INFO RollingEventLogFilesWriter: Logging events to "
        "file:/tmp/evlog/eventlog_v2_local-1795862547526/events_1_local-1795862547526.zstd\n"
    )
    for cut in range(len(line) - 60, len(line) - 30):
        assert find_application_id(line[:cut]) in (None, "local-1795862547526")
    assert find_application_id(line[: line.index("local-") + len("local-179586254")]) is None
    standalone = (
        "INFO StandaloneSchedulerBackend: Connected to Spark cluster with app ID app-2026112"
    )
    assert find_application_id(standalone) is None
