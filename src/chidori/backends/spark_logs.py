"""Read what matters out of a Spark driver log (spark-submit's stdout and stderr, merged).

Pure functions over log text. Both of Spark's log layouts are understood: the plain pattern
layout Spark 4.3 uses by default (``26/11/28 10:42:27 INFO Logger: message``) and the JSON
layout of ``spark.log.structuredLogging.enabled=true`` (one ``{"ts", "level", "msg",
"logger", ...}`` object a line).

Where the application id is printed (measured on Spark 4.3.0):

- local mode: nowhere, unless event logging is on; then ``RollingEventLogFilesWriter: Logging
  events to file:/DIR/eventlog_v2_local-<millis>/events_1_local-<millis>.zstd`` (or
  ``SingleEventLogFileWriter: Logging events to file:/DIR/local-<millis>[.codec].inprogress``
  when rolling is off).
- standalone: ``StandaloneSchedulerBackend: Connected to Spark cluster with app ID
  app-<yyyyMMddHHmmss>-<nnnn>``.
- YARN (from Spark's source): ``Client: Submitted application application_<ts>_<n>`` and
  ``Application report for application_<ts>_<n> (state: ...)``.
- Kubernetes (from Spark's source): ``Application status for spark-<32 hex> (phase: ...)``;
  in client mode only the event log line carries it.

A Python driver's own stderr (tracebacks) reaches spark-submit's stdout: PySpark merges the
Python process's stderr into its stdout.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

MAX_SUMMARY_CHARS = 300

# Exact shapes (millisecond timestamps have 13 digits), so that an id cut off at the end of a
# partly written log is not mistaken for a whole one.
_APP_ID = (
    r"(?:local-\d{13}(?!\d)"
    r"|app-\d{14}-\d{4,}"
    r"|application_\d{13}_\d{4,}"
    r"|spark-[0-9a-f]{32}(?![0-9a-f]))"
)
_APP_ID_TOKEN = re.compile(rf"(?<![\w-])(?P<id>{_APP_ID})(?![\w])")

# Lines that name the application id, most specific first.
_APP_ID_LINES = [
    re.compile(rf"Connected to Spark cluster with app ID (?P<id>{_APP_ID})"),
    re.compile(rf"Logging events to \S*?(?P<id>{_APP_ID})(?![\w])"),
    re.compile(rf"Submitted application (?P<id>{_APP_ID})"),
    re.compile(rf"Application report for (?P<id>{_APP_ID})"),
    re.compile(rf"Application status for (?P<id>{_APP_ID})"),
    re.compile(rf"spark-app-selector -> (?P<id>{_APP_ID})"),
    re.compile(rf"\bapp(?:lication)?[ _]?id\W{{1,3}}(?P<id>{_APP_ID})", re.IGNORECASE),
]

_PLAIN_LOG_LINE = re.compile(
    r"^\d{2,4}[/-]\d{2}[/-]\d{2}[ T]\d{2}:\d{2}:\d{2}\S*\s+"
    r"(?P<level>TRACE|DEBUG|INFO|WARN|WARNING|ERROR|FATAL)\s+(?P<logger>[^:\s]+):\s?(?P<msg>.*)$"
)
_TRACEBACK_START = "Traceback (most recent call last):"
_PY_EXCEPTION_LINE = re.compile(r"^(?P<cls>[A-Za-z_][\w.]*)(?::\s?(?P<msg>.*))?$")
_PY_INTERPRETER_ERROR = re.compile(r"^\S*python[\d.]*: (?P<msg>.+)$")
_JAVA_MAIN_EXCEPTION = re.compile(r'^Exception in thread "[^"]*" (?P<msg>.+)$')
_SUBMIT_ERROR = re.compile(r"^Error: (?P<msg>.+)$")


def _json_record(line: str) -> dict[str, object] | None:
    if not line.startswith("{"):
        return None
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if isinstance(record, dict) and isinstance(record.get("msg"), str):
        return record
    return None


def _messages(text: str) -> Iterator[str]:
    """The message part of every line: JSON records give their ``msg``, other lines as is."""
    for line in text.splitlines():
        record = _json_record(line)
        if record is not None:
            yield str(record["msg"])
        else:
            yield line


def find_application_id(text: str) -> str | None:
    """The Spark application id printed in a driver log, or None if the log names none.

    Recognises local (``local-<millis>``), standalone (``app-<yyyyMMddHHmmss>-<nnnn>``),
    YARN (``application_<ts>_<n>``) and Kubernetes (``spark-<32 hex>``) ids, in plain or
    JSON log lines. A line known to announce the id wins; otherwise the first id-shaped token
    on a log line that mentions an application or event log is taken.
    """
    fallback: str | None = None
    for msg in _messages(text):
        for pattern in _APP_ID_LINES:
            match = pattern.search(msg)
            if match:
                return match.group("id")
        if fallback is None and re.search(r"app|event", msg, re.IGNORECASE):
            token = _APP_ID_TOKEN.search(msg)
            if token:
                fallback = token.group("id")
    return fallback


def _clip(line: str) -> str:
    line = " ".join(line.split())
    if len(line) <= MAX_SUMMARY_CHARS:
        return line
    return line[: MAX_SUMMARY_CHARS - 3].rstrip() + "..."


def _normalised_lines(text: str) -> list[str]:
    """Lines with JSON records turned into plain ``LEVEL logger: msg`` (+ their exception)."""
    out: list[str] = []
    for line in text.splitlines():
        record = _json_record(line)
        if record is None:
            out.append(line.rstrip("\r"))
            continue
        out.append(f"{record.get('level', '')} {record.get('logger', '')}: {record['msg']}")
        exc = record.get("exception")
        if isinstance(exc, dict) and exc.get("class"):
            out.append(f"\t{exc.get('class')}: {exc.get('msg', '')}")
    return out


def _python_exception(lines: list[str]) -> str | None:
    """The exception line ending the last Python traceback."""
    starts = [i for i, line in enumerate(lines) if line.strip() == _TRACEBACK_START]
    if not starts:
        return None
    for i in range(starts[-1] + 1, len(lines)):
        line = lines[i]
        if not line or line[0].isspace():
            continue  # frames, source lines, carets
        if _PLAIN_LOG_LINE.match(line) or _json_record(line):
            continue  # a log line interleaved with the traceback
        match = _PY_EXCEPTION_LINE.match(line)
        if not match:
            continue
        summary = line
        msg = match.group("msg") or ""
        if match.group("cls").endswith("Py4JJavaError") or not msg.strip():
            # Py4JJavaError's message goes on: ": java.lang.SomeException: what happened".
            follow = lines[i + 1] if i + 1 < len(lines) else ""
            if follow.startswith(": "):
                summary = f"{line} {follow[2:]}"
        return _clip(summary)
    return None


def _last(lines: list[str], pattern: re.Pattern[str]) -> str | None:
    for line in reversed(lines):
        if pattern.match(line):
            return _clip(line)
    return None


def _last_error_log(lines: list[str]) -> str | None:
    for line in reversed(lines):
        match = _PLAIN_LOG_LINE.match(line)
        if match and match.group("level") in ("ERROR", "FATAL"):
            return _clip(f"{match.group('logger')}: {match.group('msg')}")
        if line.startswith(("ERROR ", "FATAL ")):  # a normalised JSON record
            return _clip(line.split(" ", 1)[1])
    return None


def summarize_failure(text: str) -> str | None:
    """The most useful one-line error of a failed driver log, or None if none is found.

    In order of preference: the exception line ending the last Python traceback (with the
    Java cause of a ``Py4JJavaError``), a JVM ``Exception in thread "main" ...`` line, an
    ``Error: ...`` line from spark-submit, the Python interpreter's own complaint (``python:
    can't open file ...``), then the last ERROR-level log line. At most 300 characters.
    """
    lines = _normalised_lines(text)
    for found in (
        _python_exception(lines),
        _last(lines, _JAVA_MAIN_EXCEPTION),
        _last(lines, _SUBMIT_ERROR),
        _last(lines, _PY_INTERPRETER_ERROR),
        _last_error_log(lines),
    ):
        if found:
            return found
    return None
