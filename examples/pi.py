"""Estimate Pi with PySpark (the classic Monte Carlo example).

Run it with::

    chidori submit examples/pi.py 4

The optional argument is the number of partitions (default 2); each partition
draws about 100000 random points.
"""

from __future__ import annotations

import random
import sys
from operator import add

from pyspark.sql import SparkSession

SAMPLES_PER_PARTITION = 100_000


def inside(_: int) -> int:
    x = random.random() * 2 - 1
    y = random.random() * 2 - 1
    return 1 if x * x + y * y <= 1 else 0


def main(argv: list[str]) -> None:
    partitions = int(argv[1]) if len(argv) > 1 else 2
    spark = SparkSession.builder.appName("PythonPi").getOrCreate()
    n = SAMPLES_PER_PARTITION * partitions
    count = spark.sparkContext.parallelize(range(1, n + 1), partitions).map(inside).reduce(add)
    print(f"Pi is roughly {4.0 * count / n:f}")
    spark.stop()


if __name__ == "__main__":
    main(sys.argv)
