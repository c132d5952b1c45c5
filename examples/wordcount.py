"""Count the words of a text file with PySpark.

Run it with::

    chidori submit examples/wordcount.py                  # uses examples/data/words.txt
    chidori submit examples/wordcount.py /path/to/file.txt
    chidori submit --files notes.txt examples/wordcount.py notes.txt

If the argument is not an existing path, it is looked up with
``pyspark.SparkFiles.get`` so a file shipped with ``--files`` can be named by
its base name. Prints the 10 most frequent words as ``word: count`` lines and
then ``total words: N``.
"""

from __future__ import annotations

import re
import sys
from operator import add
from pathlib import Path

from pyspark import SparkFiles
from pyspark.sql import SparkSession

DEFAULT_INPUT = Path(__file__).parent / "data" / "words.txt"
WORD = re.compile(r"[a-z0-9']+")


def resolve_input(argv: list[str]) -> Path:
    if len(argv) < 2:
        return DEFAULT_INPUT
    candidate = Path(argv[1])
    if candidate.exists():
        return candidate
    return Path(SparkFiles.get(argv[1]))


def words(line: str) -> list[str]:
    return [w.strip("'") for w in WORD.findall(line.lower()) if w.strip("'")]


def main(argv: list[str]) -> None:
    spark = SparkSession.builder.appName("PythonWordCount").getOrCreate()
    path = resolve_input(argv)
    lines = spark.read.text(str(path.resolve())).rdd.map(lambda row: row[0])
    counts = lines.flatMap(words).map(lambda w: (w, 1)).reduceByKey(add)
    top = counts.takeOrdered(10, key=lambda kv: (-kv[1], kv[0]))
    total = counts.map(lambda kv: kv[1]).sum()
    for word, count in top:
        print(f"{word}: {count}")
    print(f"total words: {total}")
    spark.stop()


if __name__ == "__main__":
    main(sys.argv)
