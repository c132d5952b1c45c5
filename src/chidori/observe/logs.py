"""Server logs as text or as JSON lines, with the job, attempt and request they are about.

The job, attempt and request ids live in context variables, set where work for one job or
one request happens (`job_context`, `request_context`). Threads do not inherit context
variables: each thread that works for a job sets them where its work starts."""

from __future__ import annotations

import json
import logging
import re
import secrets
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

job_id_var: ContextVar[int | None] = ContextVar("chidori_job_id", default=None)
attempt_var: ContextVar[int | None] = ContextVar("chidori_attempt", default=None)
request_id_var: ContextVar[str | None] = ContextVar("chidori_request_id", default=None)

# A request id from a client is kept only if it is short and plain (it is echoed back).
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


def request_id_from(header: str | None) -> str:
    """The client's `X-Request-ID` if it is sane, else a new one."""
    if header is not None and _SANE_REQUEST_ID.fullmatch(header):
        return header
    return secrets.token_hex(8)


@contextmanager
def job_context(job_id: int, attempt: int | None = None) -> Iterator[None]:
    job_token = job_id_var.set(job_id)
    attempt_token = attempt_var.set(attempt)
    try:
        yield
    finally:
        attempt_var.reset(attempt_token)
        job_id_var.reset(job_token)


@contextmanager
def request_context(request_id: str) -> Iterator[None]:
    token = request_id_var.set(request_id)
    try:
        yield
    finally:
        request_id_var.reset(token)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the thread, and `job_id`,
    `attempt`, `request_id` when set; a traceback goes into `exception`, as one string."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "thread": record.threadName,
        }
        for name, var in (("job_id", job_id_var), ("attempt", attempt_var)):
            value = getattr(record, name, None)
            if value is None:
                value = var.get()
            if value is not None:
                line[name] = value
        request_id = getattr(record, "request_id", None) or request_id_var.get()
        if request_id is not None:
            line["request_id"] = request_id
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str)


def configure_logging(log_format: str, level: int = logging.INFO) -> None:
    """Log to stderr in `log_format` (text or json). In JSON, Python's warnings and uncaught
    exceptions in threads are logged too, so no multi-line text reaches the log."""
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    if log_format == "json":
        logging.captureWarnings(True)
        threading.excepthook = _log_thread_exception
        sys.excepthook = _log_uncaught


def _log_thread_exception(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit or args.exc_value is None:
        return
    name = args.thread.name if args.thread is not None else "?"
    logging.getLogger("chidori").error(
        "uncaught exception in thread %s",
        name,
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )


def _log_uncaught(
    exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
) -> None:
    logging.getLogger("chidori").critical("uncaught exception", exc_info=(exc_type, exc, tb))
