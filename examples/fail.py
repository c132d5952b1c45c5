"""A Spark job that fails on purpose, to test failure reporting.

Run it with::

    chidori submit examples/fail.py

It starts a SparkSession, then raises a ValueError: the driver log ends with a
Python traceback and spark-submit exits with code 1.
"""

from __future__ import annotations

from pyspark.sql import SparkSession


def main() -> None:
    SparkSession.builder.appName("PythonFail").getOrCreate()
    raise ValueError("fail.py failed on purpose: the input table is empty")


if __name__ == "__main__":
    main()
