"""A Spark job whose UDF imports a package from its requirements, on a real standalone master:
the driver uses the job's environment in place, the executors' Python workers a packed copy
shipped with `--archives`, as executors on other hosts would (real uv, real PyPI: one small
pure-Python package)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chidori.backends.spark import SHIPPED_ENVIRONMENT
from tests.server import ChidoriServer
from tests.standalone import standalone_cluster

UDF_JOB = """\
from pyspark.sql import SparkSession
from pyspark.sql.functions import udf

spark = SparkSession.builder.appName("env-udf").getOrCreate()


@udf("string")
def where_tabulate_is(n):
    import os
    import tabulate

    return f"{tabulate.__version__} {tabulate.__file__} pid {os.getpid()}"


row = spark.range(1).select(where_tabulate_is("id")).collect()[0][0]
import os
import sys

import tabulate

# One write per line: Spark's own log lines go to the same file and must not land inside.
sys.stdout.write(f"udf saw {row}\\n")
sys.stdout.write(f"driver saw {tabulate.__version__} {tabulate.__file__} pid {os.getpid()}\\n")
sys.stdout.flush()
spark.stop()
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChidoriServer]:
    work = tmp_path_factory.mktemp("envs-standalone")
    with standalone_cluster(work / "cluster") as cluster:
        config = work / "chidori.yaml"
        config.write_text(
            f"clusters:\n  lab:\n    type: standalone\n    master: {cluster.master_url}\n"
        )
        with ChidoriServer(work / "home", config=config) as server:
            yield server


@pytest.mark.spark
def test_a_udf_on_standalone_executors_imports_the_jobs_package(lab: ChidoriServer) -> None:
    with lab.client() as client:
        uri = client.post("/api/v1/uploads", files={"file": ("udf.py", UDF_JOB.encode())})
        assert uri.status_code == 201, uri.text
    job = lab.submit(
        application=uri.json()["uri"],
        cluster="lab",
        executor_instances=1,
        executor_memory="512m",
        requirements=["tabulate==0.9.0"],
    )
    done = lab.wait(job["id"])
    log = lab.log(job["id"])
    assert done["state"] == "SUCCEEDED", log
    udf_line = next(line for line in log.splitlines() if line.startswith("udf saw"))
    driver_line = next(line for line in log.splitlines() if line.startswith("driver saw"))
    # Both from the job's environment, in two processes: the driver reads it where it was
    # built; the executor's Python worker from the packed copy it was sent (as on any host).
    assert "0.9.0" in udf_line and f"{SHIPPED_ENVIRONMENT}/site/" in udf_line, udf_line
    assert "/envs/" not in udf_line
    assert "0.9.0" in driver_line and "/envs/" in driver_line, driver_line
    assert udf_line.rsplit(" pid ", 1)[-1] != driver_line.rsplit(" pid ", 1)[-1], (
        udf_line,
        driver_line,
    )
