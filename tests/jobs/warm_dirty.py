"""Leaves every kind of state a job can leave in its Spark driver: a temp view, a global temp
view, cached data, a runtime conf value, a registered function, a file in its directory."""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import SparkSession

spark = SparkSession.builder.appName("warm-dirty").getOrCreate()
frame = spark.range(1000)
frame.createOrReplaceTempView("leftover_view")
frame.createOrReplaceGlobalTempView("leftover_global")
frame.cache().count()
spark.conf.set("chidori.test.leftover", "dirty")
spark.conf.set("spark.sql.shuffle.partitions", "7")
spark.udf.register("leftover_udf", lambda x: x)
spark.sparkContext.setLocalProperty("chidori.test.property", "dirty")
Path("leftover.txt").write_text("dirty")
print(f"dirty application {spark.sparkContext.applicationId}")
