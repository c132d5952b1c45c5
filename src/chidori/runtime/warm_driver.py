"""A warm driver: the program spark-submit runs ahead of any job (stdlib and PySpark only).

It starts the SparkSession and a Python worker, says it is ready, then waits for one job in
its control directory: `job.json` (written by the server, atomically). It acknowledges the job
(`job.taken`, or `job.refused` with a reason when Spark would not honour the job's conf), runs
the job's application as `__main__` in this process, so the application's own
`SparkSession.builder...getOrCreate()` gets the prepared session, and exits with the
application's exit code. One job per driver: nothing of one job can reach the next.
"""

from __future__ import annotations

import json
import os
import runpy
import sys
import time
import traceback
from pathlib import Path
from typing import Any

POLL_SECONDS = 0.01
# chidori.domain.warm.EXECUTORS_AT_HANDOVER (this program imports nothing of Chidori).
EXECUTORS_AT_HANDOVER = "spark.chidori.warm.executorsAtHandover"


def _write_atomically(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    os.replace(partial, path)


def _prepare() -> Any:
    from pyspark import SparkConf, SparkContext
    from pyspark.sql import SparkSession

    SparkContext._ensure_initialized()  # the JVM's conf (spark-submit's) is read from there
    builder = SparkSession.builder
    executors_later = SparkConf().get(EXECUTORS_AT_HANDOVER) == "true"
    if executors_later:
        # No executors until a job is handed over (spark-submit refuses 0 on its command line).
        builder = builder.config("spark.executor.instances", "0")
    spark = builder.getOrCreate()
    if not executors_later:
        # Start the Python worker now too: the first Python task otherwise pays for it (~1.6 s).
        # (Tasks run in executors where those come at hand-over: nothing to start here.)
        spark.sparkContext.parallelize([0], 1).map(lambda x: x).count()
    return spark


def _wait_for_job(control: Path) -> dict[str, Any]:
    job_file = control / "job.json"
    while not job_file.exists():
        time.sleep(POLL_SECONDS)
    job: dict[str, Any] = json.loads(job_file.read_text())
    return job


def _refusal(spark: Any, conf: dict[str, str]) -> str | None:
    for key in conf:
        if key != "spark.app.name" and not spark.conf.isModifiable(key):
            return f"{key} can only be set when the driver starts"
    return None


def _ask_for_executors(spark: Any, job: dict[str, Any]) -> None:
    """Kubernetes: label the executor pods for this job (Spark reads the pod template for each
    pod it builds), then ask for the job's executors (the driver started with none)."""
    context = spark.sparkContext
    template_path = context.getConf().get("spark.kubernetes.executor.podTemplateFile", "")
    if template_path and job.get("executor_labels"):
        template = json.loads(Path(template_path).read_text())
        labels = template.setdefault("metadata", {}).setdefault("labels", {})
        labels.update(job["executor_labels"])
        _write_atomically(Path(template_path), json.dumps(template))
    context._jsc.sc().requestExecutors(int(job["executors"]))


def _run(spark: Any, job: dict[str, Any]) -> int:
    for key, value in job["conf"].items():
        if key != "spark.app.name":
            spark.conf.set(key, value)
    context = spark.sparkContext
    context.setLocalProperty("spark.job.description", job["name"])
    cwd = Path(job["cwd"])
    os.chdir(cwd)
    for path in job["py_files"]:
        context.addPyFile(path)
        sys.path.insert(0, path)
    for path in job["files"]:
        context.addFile(path)
        target = cwd / Path(path).name
        if not target.exists():
            target.symlink_to(path)
    if job.get("executors"):
        _ask_for_executors(spark, job)
    application = job["application"]
    sys.argv = [application, *job["args"]]
    sys.path.insert(0, str(Path(application).parent))
    print(
        f"chidori: job {job['job_id']} ({job['name']}) runs on warm driver "
        f"{os.environ.get('CHIDORI_WARM_ID', '?')}, application {context.applicationId}",
        flush=True,
    )
    try:
        runpy.run_path(application, run_name="__main__")
    except SystemExit as exc:
        code = exc.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        print(code, file=sys.stderr)
        return 1
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


def main(control: Path) -> int:
    spark = _prepare()
    print(f"chidori: warm driver ready, application {spark.sparkContext.applicationId}", flush=True)
    _write_atomically(control / "ready", spark.sparkContext.applicationId)
    job = _wait_for_job(control)
    refusal = _refusal(spark, job["conf"])
    if refusal is not None:
        _write_atomically(control / "job.refused", refusal)
        # The server starts the job cold and stops this driver.
        while True:
            time.sleep(60)
    _write_atomically(control / "job.taken", str(job["job_id"]))
    code = _run(spark, job)
    sys.stdout.flush()
    sys.stderr.flush()
    return code


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
