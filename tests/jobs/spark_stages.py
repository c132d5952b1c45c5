"""A Spark application with several stages whose tasks each sleep a little, so that its
progress can be seen moving: a shuffle (two stages), then a one-stage job.

    spark_stages.py [SECONDS_PER_TASK] [TASKS] [MODE]

MODE `fail`: a third job has a task that raises, which the driver catches (the application
still succeeds, with one failed job and one failed task). MODE `hostile`: after its work the
driver writes garbage into its own event log (an overlong line, deep nesting, bad numbers,
thousands of invented stages, binary noise) and a link named as a single-file log.
"""

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

from pyspark.sql import SparkSession


def sleepy(seconds: float) -> Callable[[Iterable[Any]], list[Any]]:
    def run(rows: Iterable[Any]) -> list[Any]:
        time.sleep(seconds)
        return list(rows)

    return run


def boom(rows: Iterable[int]) -> list[int]:
    values = list(rows)
    if 0 in values:
        raise RuntimeError("this task fails on purpose")
    return values


def scribble(context: Any) -> None:
    """Garbage appended to this application's own event log (what a hostile job can do)."""
    folder = context.getConf().get("spark.eventLog.dir").removeprefix("file:")
    name = context.applicationId
    rolling = os.path.join(folder, f"eventlog_v2_{name}")
    path = os.path.join(rolling, f"events_1_{name}")
    if not os.path.exists(path):
        path = os.path.join(folder, f"{name}.inprogress")
    with open(path, "ab") as log:
        log.write(b"x" * (3 * 1024 * 1024) + b"\n")
        log.write(b"[" * 200_000 + b"\n")
        log.write(b'{"Event": "SparkListenerJobStart", "Job ID": "x", "Stage Infos": "no"}\n')
        log.write(
            b'{"Event": "SparkListenerStageSubmitted", "Stage Info": '
            b'{"Stage ID": -5, "Number of Tasks": 1e300, "Stage Name": 7}}\n'
        )
        for stage in range(1000, 4000):
            log.write(
                b'{"Event": "SparkListenerStageSubmitted", "Stage Info": {"Stage ID": %d, '
                b'"Stage Attempt ID": 0, "Number of Tasks": 3, "Stage Name": "%s"}}\n'
                % (stage, b"n" * 1000)
            )
        log.write(os.urandom(200_000) + b"\n")
    # A single-file log name that points elsewhere: the server must not follow it.
    with contextlib.suppress(OSError):
        os.symlink("/etc/passwd", os.path.join(folder, f"{name}.inprogress"))


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 0.5
    tasks = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    mode = sys.argv[3] if len(sys.argv) > 3 else ""
    spark = SparkSession.builder.appName("stages").getOrCreate()
    context = spark.sparkContext
    pairs = (
        context.parallelize(range(tasks * 100), tasks)
        .mapPartitions(sleepy(seconds))
        .map(lambda x: (x % 17, x))
    )
    total = pairs.reduceByKey(lambda a, b: a + b, tasks).mapPartitions(sleepy(seconds)).count()
    print(f"keys: {total}", flush=True)
    counted = context.parallelize(range(tasks), tasks).mapPartitions(sleepy(seconds)).count()
    print(f"counted: {counted}", flush=True)
    if mode == "fail":
        try:
            context.parallelize(range(4), 2).mapPartitions(boom).count()
        except Exception as exc:  # the failure is the point
            print(f"failed as planned: {type(exc).__name__}", flush=True)
    if mode == "hostile":
        scribble(context)
    spark.stop()


if __name__ == "__main__":
    main()
