"""Prints what it finds of an earlier job's state (see warm_dirty.py) and the conf it was given;
exits 3 if anything leaked."""

from __future__ import annotations

import sys
from pathlib import Path

from pyspark.sql import SparkSession

spark = SparkSession.builder.appName("warm-probe").getOrCreate()
context = spark.sparkContext
leaks = []
tables = [t.name for t in spark.catalog.listTables()]
if "leftover_view" in tables:
    leaks.append("temp view")
if "leftover_global" in [t.name for t in spark.catalog.listTables("global_temp")]:
    leaks.append("global temp view")
if context._jsc.getPersistentRDDs().size() > 0:
    leaks.append("cached data")
if spark.conf.get("chidori.test.leftover", None) is not None:
    leaks.append("conf value")
if spark.conf.get("spark.sql.shuffle.partitions") == "7":
    leaks.append("shuffle partitions")
if "leftover_udf" in [f.name for f in spark.catalog.listFunctions()]:
    leaks.append("function")
if context.getLocalProperty("chidori.test.property") is not None:
    leaks.append("local property")
if Path("leftover.txt").exists():
    leaks.append("file")
print(f"probe application {context.applicationId}")
print(f"probe conf {spark.conf.get('spark.sql.session.timeZone')}")
print("leaks: " + (", ".join(leaks) if leaks else "none"))
total = spark.range(10).selectExpr("sum(id)").collect()[0][0]
print(f"sum {total}")
sys.exit(3 if leaks else 0)
