"""Test job: starts a SparkSession, says so, then sleeps (to be cancelled)."""

import time

from pyspark.sql import SparkSession

spark = SparkSession.builder.appName("spark-sleep").getOrCreate()
print("session ready", spark.sparkContext.applicationId, flush=True)
time.sleep(600)
