"""Hosted Spark backends: `local` (local mode) and `standalone` (a spark:// master).

Both run `spark-submit --deploy-mode client` from the installed pyspark (or a configured
SPARK_HOME), so the driver is a child process of Chidori; `kind: python` jobs run as a plain
Python process.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from chidori.backends.base import DriverCommand, HostedBackend, LaunchRequest
from chidori.backends.spark_home import SparkNotFound, find_spark_home, spark_submit_path
from chidori.config import ClusterConfig
from chidori.errors import BackendError
from chidori.files import write_private
from chidori.spec import JobSpec

# Conf Chidori sets unless the cluster or the job says otherwise.
DEFAULT_CONF = {
    # The live UI binds every interface by default; the History Server shows finished runs.
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
}


def _escape(text: str, is_key: bool) -> str:
    out = []
    for index, char in enumerate(text):
        if char == "\\":
            out.append("\\\\")
        elif char == "\n":
            out.append("\\n")
        elif char == "\r":
            out.append("\\r")
        elif char == "\t":
            out.append("\\t")
        elif char in "=:#!" or (char == " " and (is_key or index == 0)):
            out.append("\\" + char)
        elif ord(char) > 0x7E or ord(char) < 0x20:
            encoded = char.encode("utf-16-be")  # surrogate pairs for characters past U+FFFF
            out += [f"\\u{encoded[i] << 8 | encoded[i + 1]:04x}" for i in range(0, len(encoded), 2)]
        else:
            out.append(char)
    return "".join(out)


def java_properties(conf: dict[str, str]) -> str:
    """`conf` in java.util.Properties format (what spark-submit's --properties-file reads)."""
    return "".join(f"{_escape(k, True)}={_escape(v, False)}\n" for k, v in conf.items())


class SparkBackend(HostedBackend):
    """Runs drivers in client mode against the cluster's master URL."""

    def __init__(
        self, cluster: ClusterConfig, base_env: dict[str, str], event_log_dir: Path | None
    ) -> None:
        super().__init__(cluster)
        self._base_env = base_env
        self._event_log_dir = event_log_dir

    def _environment(self, request: LaunchRequest, spark_home: Path | None) -> dict[str, str]:
        python = self.cluster.python or sys.executable
        env = dict(self._base_env)
        env.update(
            {
                "PYSPARK_PYTHON": python,
                "PYSPARK_DRIVER_PYTHON": python,
                "SPARK_LOCAL_IP": env.get("SPARK_LOCAL_IP", "127.0.0.1"),
                "PYTHONUNBUFFERED": "1",
                "CHIDORI_JOB_ID": str(request.job.id),
                "CHIDORI_ATTEMPT": str(request.attempt),
            }
        )
        if spark_home is not None:
            env["SPARK_HOME"] = str(spark_home)
        return env

    def driver_command(self, request: LaunchRequest) -> DriverCommand:
        spec = request.job.spec
        if spec.kind == "python":
            return self._python_command(request)
        try:
            spark_home = find_spark_home(
                {"SPARK_HOME": self.cluster.spark_home}
                if self.cluster.spark_home
                else self._base_env
            )
        except SparkNotFound as exc:
            raise BackendError(str(exc)) from exc
        argv = [str(spark_submit_path(spark_home)), *self.submit_args(request)]
        return DriverCommand(argv, self._environment(request, spark_home), request.work_dir)

    def submit_args(self, request: LaunchRequest) -> list[str]:
        """spark-submit's arguments for this attempt (everything after the program name)."""
        spec = request.job.spec
        resolve = request.resolve
        conf: dict[str, str] = dict(DEFAULT_CONF)
        if self._event_log_dir is not None:
            self._event_log_dir.mkdir(parents=True, exist_ok=True)
            conf["spark.eventLog.enabled"] = "true"
            conf["spark.eventLog.dir"] = self._event_log_dir.as_uri()
        conf.update(self.cluster.conf)
        conf.update(self._resource_conf(spec))
        conf.update(spec.conf)
        args = [
            "--master",
            self.cluster.master,
            "--deploy-mode",
            "client",
            "--name",
            request.job.name,
            "--driver-memory",
            spec.driver_memory,
        ]
        if spec.main_class:
            args += ["--class", spec.main_class]
        for flag, field in (
            ("--py-files", "py_files"),
            ("--jars", "jars"),
            ("--files", "files"),
            ("--archives", "archives"),
        ):
            refs: list[str] = getattr(spec, field)
            if refs:
                resolved = [resolve(ref, f"{field}[{i}]") for i, ref in enumerate(refs)]
                args += [flag, ",".join(resolved)]
        # Conf goes in a private file, not on the command line, where `ps` would show secrets.
        properties = request.work_dir / "spark.properties"
        write_private(properties, java_properties(conf))
        args += ["--properties-file", str(properties)]
        args.append(resolve(spec.application, "application"))
        args += spec.args
        return args

    def _resource_conf(self, spec: JobSpec) -> dict[str, str]:
        conf = {
            "spark.driver.cores": str(spec.driver_cores),
            "spark.executor.memory": spec.executor_memory,
            "spark.executor.cores": str(spec.executor_cores),
        }
        if spec.executor_instances and self.cluster.type == "standalone":
            # Standalone has no executor count; capping total cores gives the same gang size.
            conf["spark.cores.max"] = str(spec.executor_instances * spec.executor_cores)
        elif spec.executor_instances:
            conf["spark.executor.instances"] = str(spec.executor_instances)
        return conf

    def _python_command(self, request: LaunchRequest) -> DriverCommand:
        spec = request.job.spec
        env = self._environment(request, None)
        paths = [request.resolve(ref, f"py_files[{i}]") for i, ref in enumerate(spec.py_files)]
        for i, ref in enumerate(spec.files):
            source = Path(request.resolve(ref, f"files[{i}]"))
            if source.is_file():
                target = request.work_dir / source.name
                if not target.exists():
                    os.symlink(source, target)
        if paths:
            env["PYTHONPATH"] = os.pathsep.join([*paths, env.get("PYTHONPATH", "")]).rstrip(
                os.pathsep
            )
        python = self.cluster.python or sys.executable
        argv = [python, "-u", request.resolve(spec.application, "application"), *spec.args]
        return DriverCommand(argv, env, request.work_dir)
