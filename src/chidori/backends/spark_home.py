"""Locate the Spark installation used to run spark-submit."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from pathlib import Path


class SparkNotFound(RuntimeError):
    """No usable Spark installation (SPARK_HOME or the pyspark package) was found."""


def _has_spark_submit(home: Path) -> bool:
    return spark_submit_path(home).is_file()


def _pyspark_package_dir() -> Path | None:
    spec = importlib.util.find_spec("pyspark")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def find_spark_home(environ: Mapping[str, str]) -> Path:
    """The Spark home: ``SPARK_HOME`` if it holds ``bin/spark-submit``, else the pyspark package.

    Raises ``SparkNotFound`` when neither holds ``bin/spark-submit``.
    """
    tried: list[str] = []
    configured = environ.get("SPARK_HOME", "").strip()
    if configured:
        home = Path(configured).expanduser()
        if _has_spark_submit(home):
            return home
        tried.append(f"SPARK_HOME={configured} (no bin/spark-submit there)")
    else:
        tried.append("SPARK_HOME (not set)")
    package = _pyspark_package_dir()
    if package is not None:
        if _has_spark_submit(package):
            return package
        tried.append(f"the pyspark package at {package} (no bin/spark-submit there)")
    else:
        tried.append("the pyspark package (not installed)")
    raise SparkNotFound(
        "Spark not found: tried "
        + "; ".join(tried)
        + ". Install pyspark (pip install pyspark) or set SPARK_HOME to a Spark distribution."
    )


def spark_submit_path(spark_home: Path) -> Path:
    """The ``spark-submit`` launcher of a Spark home."""
    return spark_home / "bin" / "spark-submit"
