"""The driver of a Livy interactive session, run by spark-submit (client mode) as a PySpark
application: `session_driver.py CONTROL_DIR [IDLE_TIMEOUT_SECONDS]`.

Only the standard library and pyspark: this runs inside spark-submit, not inside Chidori.
It talks to the server's relay through files in CONTROL_DIR, each written atomically
(temporary file, then rename), so a reader never sees half a file:

- `ready`                 written once the SparkSession is up;
- `in/<n>.json`           a statement to run: {"id", "code", "kind": "pyspark" | "sql"};
- `started/<n>`           written when statement n starts (epoch milliseconds);
- `out/<n>.json`          its result: {"id", "state", "output", "started", "completed"};
- `cancel/<n>`            asks to cancel statement n;
- `stop`                  asks the driver to exit (0).

Statements run one at a time, in the order of their numbers, in one persistent namespace
holding `spark`, `sc` and `sqlContext`. Python code runs as an interactive shell runs it: the
value of a final expression is shown (its repr), and what the code prints is captured. SQL
runs through `spark.sql`, its rows returned in Livy's JSON table form (at most MAX_ROWS).

Each statement runs under its own Spark job group, so a cancel stops its Spark jobs; a
statement busy in pure Python cannot be interrupted and ends when its code does (it is still
reported `cancelled`).

The driver exits 0 after IDLE_TIMEOUT_SECONDS (default one hour) without a statement, so an
abandoned session frees its slot.
"""

from __future__ import annotations

import ast
import base64
import contextlib
import datetime
import decimal
import io
import json
import os
import sys
import threading
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

POLL_SECONDS = 0.05
DEFAULT_IDLE_TIMEOUT = 3600.0
MAX_ROWS = 1000  # as Livy's spark.livy.sql.max-result
MAX_TEXT = 1024 * 1024  # captured output kept per statement (characters)


def now_ms() -> int:
    return int(time.time() * 1000)


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def ok_output(count: int, data: dict[str, Any]) -> dict[str, Any]:
    return {"status": "ok", "execution_count": count, "data": data}


def error_output(count: int, ename: str, evalue: str, tb: list[str]) -> dict[str, Any]:
    return {
        "status": "error",
        "execution_count": count,
        "ename": ename,
        "evalue": evalue,
        "traceback": tb,
    }


def warning_to_log(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    """Warnings go to the driver's log, not into a statement's output: library warnings
    (pyspark's about DataFrame.toJSON, say) would corrupt output clients parse, such as the
    JSON lines pylivy's `download` reads."""
    del file
    if sys.__stderr__ is not None:
        sys.__stderr__.write(warnings.formatwarning(message, category, filename, lineno, line))


def json_value(value: Any) -> Any:
    """A SQL result value as JSON (as Livy's json4s renders it, near enough)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, datetime.datetime | datetime.date):
        return str(value)
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if hasattr(value, "asDict"):  # a nested Row
        return {str(k): json_value(v) for k, v in value.asDict().items()}
    if isinstance(value, list | tuple):
        return [json_value(v) for v in value]
    return str(value)


class Repl:
    """One persistent Python namespace, and the SparkSession's SQL."""

    def __init__(self, spark: Any, sc: Any, sql_context: Any) -> None:
        self.spark = spark
        self.namespace: dict[str, Any] = {
            "__name__": "__main__",
            "spark": spark,
            "sc": sc,
            "sqlContext": sql_context,
        }

    def run_python(self, count: int, code: str) -> dict[str, Any]:
        try:
            module = ast.parse(code, "<stdin>", "exec")
        except SyntaxError as exc:
            lines = traceback.format_exception_only(type(exc), exc)
            return error_output(count, "SyntaxError", str(exc), lines)
        body, last = module.body[:-1], module.body[-1:]
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                if body:
                    exec(compile(ast.Module(body, []), "<stdin>", "exec"), self.namespace)  # noqa: S102
                if last:
                    # "single" mode shows the value of a final expression, as a shell does.
                    exec(compile(ast.Interactive(last), "<stdin>", "single"), self.namespace)  # noqa: S102
        except BaseException as exc:
            tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
            # Drop this driver's own frame: the user's code starts at "<stdin>".
            if len(tb) > 1 and "session_driver" in tb[1]:
                tb = tb[:1] + tb[2:]
            return error_output(count, type(exc).__name__, str(exc), tb)
        return ok_output(count, {"text/plain": out.getvalue()[:MAX_TEXT].rstrip()})

    def run_sql(self, count: int, code: str) -> dict[str, Any]:
        try:
            frame = self.spark.sql(code)
            schema = json.loads(frame.schema.json())
            rows = [[json_value(v) for v in row] for row in frame.take(MAX_ROWS)]
        except Exception as exc:
            # Livy's SQL interpreter names every failure "Error".
            tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
            return error_output(count, "Error", str(exc), tb)
        return ok_output(count, {"application/json": {"schema": schema, "data": rows}})


class Driver:
    def __init__(self, control: Path, idle_timeout: float) -> None:
        self.control = control
        self.idle_timeout = idle_timeout
        for name in ("in", "out", "started", "cancel"):
            (control / name).mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()
        self.current: int | None = None
        self.cancelled: set[int] = set()
        self.done: set[int] = set()
        self.stopped = threading.Event()
        self.sc: Any = None

    def pending(self) -> list[int]:
        numbers = []
        for path in (self.control / "in").glob("*.json"):
            if path.stem.isdigit() and int(path.stem) not in self.done:
                numbers.append(int(path.stem))
        return sorted(numbers)

    def watch_cancels(self) -> None:
        """Cancel requests arrive while the main thread runs a statement: watch them here."""
        while not self.stopped.wait(POLL_SECONDS):
            for path in (self.control / "cancel").iterdir():
                if not path.name.isdigit():
                    continue
                number = int(path.name)
                with self.lock:
                    if number in self.cancelled or number in self.done:
                        continue
                    self.cancelled.add(number)
                    if number == self.current and self.sc is not None:
                        self.sc.cancelJobGroup(f"livy-statement-{number}")

    def run_one(self, repl: Repl, number: int) -> None:
        request = json.loads((self.control / "in" / f"{number}.json").read_text("utf-8"))
        started = now_ms()
        with self.lock:
            skip = number in self.cancelled
            self.current = None if skip else number
        output: dict[str, Any] | None = None
        if not skip:
            write_atomically(self.control / "started" / str(number), str(started))
            self.sc.setJobGroup(f"livy-statement-{number}", f"Livy statement {number}", True)
            if request.get("kind") == "sql":
                output = repl.run_sql(number, request["code"])
            else:
                output = repl.run_python(number, request["code"])
        with self.lock:
            self.current = None
            self.done.add(number)
            state = "cancelled" if number in self.cancelled else "available"
        result = {
            "id": number,
            "state": state,
            "output": output,
            "started": started,
            "completed": now_ms(),
        }
        write_atomically(self.control / "out" / f"{number}.json", json.dumps(result))

    def serve(self) -> int:
        from pyspark import SparkContext
        from pyspark.sql import SparkSession

        spark = SparkSession.builder.getOrCreate()
        self.sc = SparkContext.getOrCreate()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SQLContext is deprecated, but Livy code uses it
            from pyspark.sql import SQLContext

            sql_context = SQLContext(self.sc, spark)
        repl = Repl(spark, self.sc, sql_context)
        warnings.showwarning = warning_to_log
        threading.Thread(target=self.watch_cancels, name="cancels", daemon=True).start()
        write_atomically(self.control / "ready", str(now_ms()))
        print(f"Livy session ready (application {self.sc.applicationId})", flush=True)
        last_activity = time.monotonic()
        try:
            while not (self.control / "stop").exists():
                numbers = self.pending()
                if numbers:
                    self.run_one(repl, numbers[0])
                    last_activity = time.monotonic()
                    continue
                if time.monotonic() - last_activity > self.idle_timeout:
                    print(f"Livy session idle for {self.idle_timeout:g} s: stopping", flush=True)
                    break
                time.sleep(POLL_SECONDS)
        finally:
            self.stopped.set()
            spark.stop()
        return 0


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: session_driver.py CONTROL_DIR [IDLE_TIMEOUT_SECONDS]", file=sys.stderr)
        return 2
    idle = float(argv[2]) if len(argv) > 2 else DEFAULT_IDLE_TIMEOUT
    return Driver(Path(argv[1]), idle).serve()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
