"""Hosted Spark backends: `local` (local mode) and `standalone` (a spark:// master).

Both run `spark-submit --deploy-mode client` from the installed pyspark (or a configured
SPARK_HOME), so the driver is a child process of Chidori; `kind: python` jobs run as a plain
Python process.
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import replace
from pathlib import Path

from chidori.backends.base import DriverCommand, HostedBackend, LaunchRequest
from chidori.backends.spark_home import SparkNotFound, find_spark_home, spark_submit_path
from chidori.config import ClusterConfig
from chidori.domain.errors import BackendError
from chidori.domain.spec import JobKind, JobSpec
from chidori.storage.files import write_private

# A plain script (stdlib and pyspark only) that spark-submit runs as a session's driver.
SESSION_DRIVER = Path(__file__).resolve().parent.parent / "runtime" / "session_driver.py"
# The same for a warm driver: starts Spark, then waits for one job (see chidori.host.warm_pool).
WARM_DRIVER = SESSION_DRIVER.with_name("warm_driver.py")
# The same for a Spark Connect server (kind "connect", reached through chidori.connect).
CONNECT_DRIVER = SESSION_DRIVER.with_name("connect_driver.py")

# Where executors unpack a job's shipped Python environment (`--archives ...#<this>`).
SHIPPED_ENVIRONMENT = "chidori-python-env"

# Conf Chidori sets unless the cluster or the job says otherwise.
DEFAULT_CONF = {
    # The live UI binds every interface by default; the History Server shows finished runs.
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
}
# What the event log needs for Chidori's live progress (chidori.host.spark_progress): no
# compression (a compressed stream can be read only up to its last flushed block) and a small
# buffer, so task ends reach the file every few kilobytes rather than every 100 KB (Spark
# flushes by itself only at stage, job and executor events).
LIVE_PROGRESS_CONF = {"spark.eventLog.compress": "false", "spark.eventLog.buffer.kb": "4k"}


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
        self,
        cluster: ClusterConfig,
        base_env: dict[str, str],
        event_log_dir: Path | None,
        *,
        live_progress: bool = True,
    ) -> None:
        """`live_progress`: drivers write their event log so that Chidori can read their
        progress while they run (`LIVE_PROGRESS_CONF`)."""
        super().__init__(cluster)
        self._base_env = base_env
        self._event_log_dir = event_log_dir
        self._live_progress = live_progress

    @property
    def master(self) -> str:
        """The master URL drivers are started with."""
        return self.cluster.master

    def _environment(
        self, request: LaunchRequest | None, spark_home: Path | None
    ) -> dict[str, str]:
        python = self.cluster.python or sys.executable
        env = dict(self._base_env)
        env.update(
            {
                "PYSPARK_PYTHON": python,
                "PYSPARK_DRIVER_PYTHON": python,
                "SPARK_LOCAL_IP": env.get("SPARK_LOCAL_IP", "127.0.0.1"),
                "PYTHONUNBUFFERED": "1",
            }
        )
        if request is not None:
            env["CHIDORI_JOB_ID"] = str(request.job.id)
            env["CHIDORI_ATTEMPT"] = str(request.attempt)
            if request.python_path is not None:
                # An overlay: the environment's packages first, then the server's own
                # site-packages (pyspark stays the server's: it is never in an environment).
                env["PYTHONPATH"] = str(request.python_path)
        if spark_home is not None:
            env["SPARK_HOME"] = str(spark_home)
        return env

    def runtime_paths(self) -> list[str]:
        """Folders this cluster's drivers read: Spark's home and the configured Python."""
        paths = []
        with contextlib.suppress(BackendError):
            paths.append(str(self._spark_home()))
        if self.cluster.python:
            python = Path(os.path.realpath(self.cluster.python))
            paths.append(str(python.parent.parent))
        return paths

    def _spark_home(self) -> Path:
        try:
            return find_spark_home(
                {"SPARK_HOME": self.cluster.spark_home}
                if self.cluster.spark_home
                else self._base_env
            )
        except SparkNotFound as exc:
            raise BackendError(str(exc)) from exc

    def _start_conf(self) -> dict[str, str]:
        """Conf every driver of this cluster starts with, before the job's own."""
        conf: dict[str, str] = dict(DEFAULT_CONF)
        if self._event_log_dir is not None:
            self._event_log_dir.mkdir(parents=True, exist_ok=True)
            conf["spark.eventLog.enabled"] = "true"
            conf["spark.eventLog.dir"] = self._event_log_dir.as_uri()
            if self._live_progress:
                conf.update(LIVE_PROGRESS_CONF)
        conf.update(self.cluster.conf)
        return conf

    # ---- warm drivers -------------------------------------------------------------------------

    def ships_environments(self) -> bool:
        """Standalone workers and Kubernetes executor pods may be on other hosts."""
        return self.cluster.type in ("standalone", "kubernetes")

    def warm_conf(self) -> dict[str, str] | None:
        """The conf this cluster's warm drivers start with (what a warm job cannot change).
        Local clusters only: on a standalone master an idle driver would hold executors."""
        if self.cluster.type != "local":
            return None
        pool = self.cluster.warm_pool
        conf = self._start_conf()
        conf.update(
            {
                "spark.driver.memory": pool.driver_memory,
                "spark.driver.cores": str(pool.driver_cores),
                "spark.app.name": "chidori-warm",
            }
        )
        conf.update(pool.conf)
        return conf

    def warm_command(self, control_dir: Path) -> DriverCommand:
        """The command of a warm driver, which waits for its job in `control_dir`."""
        conf = self.warm_conf()
        if conf is None:
            raise BackendError(f"cluster {self.cluster.name!r} keeps no warm drivers")
        spark_home = self._spark_home()
        properties = control_dir / "spark.properties"
        control_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        conf.update(self._warm_driver_conf(control_dir))
        write_private(properties, java_properties(conf))
        argv = [
            str(spark_submit_path(spark_home)),
            "--master", self.master,
            "--deploy-mode", "client",
            "--properties-file", str(properties),
            str(WARM_DRIVER),
            str(control_dir),
        ]  # fmt: skip
        return DriverCommand(argv, self._environment(None, spark_home), control_dir)

    def _warm_driver_conf(self, control_dir: Path) -> dict[str, str]:  # noqa: ARG002
        """Conf of one warm driver that the cluster type sets (files in `control_dir`)."""
        return {}

    def warm_job(self, request: LaunchRequest) -> dict[str, object]:
        """What a warm driver needs to run this attempt's application (paths resolved)."""
        spec = request.job.spec
        resolve = request.resolve
        return {
            "job_id": request.job.id,
            "attempt": request.attempt,
            "name": request.job.name,
            "application": resolve(spec.application, "application"),
            "args": list(spec.args),
            "conf": dict(spec.conf),
            "cwd": str(request.work_dir),
            "py_files": [resolve(r, f"py_files[{i}]") for i, r in enumerate(spec.py_files)],
            "files": [resolve(r, f"files[{i}]") for i, r in enumerate(spec.files)],
        }

    def driver_command(self, request: LaunchRequest) -> DriverCommand:
        spec = request.job.spec
        if spec.kind is JobKind.PYTHON:
            return self._python_command(request)
        spark_home = self._spark_home()
        submit_args = BUILT_IN_SUBMIT_ARGS.get(spec.kind, type(self).submit_args)
        argv = [str(spark_submit_path(spark_home)), *submit_args(self, request)]
        return DriverCommand(argv, self._environment(request, spark_home), request.work_dir)

    def submit_args(self, request: LaunchRequest) -> list[str]:
        """spark-submit's arguments for this attempt (everything after the program name)."""
        spec = request.job.spec
        resolve = request.resolve
        conf = self._start_conf()
        conf.update(self._resource_conf(spec))
        conf.update(spec.conf)
        if request.python_archive is not None:
            # Executors unpack it into their working folder (Spark's files root there), where
            # their Python workers start: a relative path finds it on any host.
            theirs = conf.get("spark.executorEnv.PYTHONPATH")
            conf["spark.executorEnv.PYTHONPATH"] = os.pathsep.join(
                p for p in (f"{SHIPPED_ENVIRONMENT}/site", theirs) if p
            )
        conf.update(self._attempt_conf(request))
        args = [
            "--master",
            self.master,
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
            resolved = [resolve(ref, f"{field}[{i}]") for i, ref in enumerate(refs)]
            if field == "archives" and request.python_archive is not None:
                resolved.append(f"{request.python_archive}#{SHIPPED_ENVIRONMENT}")
            if resolved:
                args += [flag, ",".join(resolved)]
        # Conf goes in a private file, not on the command line, where `ps` would show secrets.
        properties = request.work_dir / "spark.properties"
        write_private(properties, java_properties(conf))
        args += ["--properties-file", str(properties)]
        args.append(resolve(spec.application, "application"))
        args += spec.args
        return args

    def _attempt_conf(self, request: LaunchRequest) -> dict[str, str]:  # noqa: ARG002
        """Conf of this attempt that the cluster type sets over the job's own."""
        return {}

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
        # Zips and eggs are imported from; a .py file is imported from its folder (as
        # spark-submit's --py-files makes it importable by name).
        paths = [os.path.dirname(p) if p.endswith(".py") else p for p in paths]
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


def session_submit_args(
    backend: SparkBackend, request: LaunchRequest, driver: Path = SESSION_DRIVER
) -> list[str]:
    """spark-submit's arguments for a Livy session: as for a PySpark application, with
    Chidori's session driver as the program and its control directory (where statements come
    in and results go out) and the spec's args (the idle timeout) as its arguments. The same
    for a Connect server, with the Connect driver (which writes its endpoint there)."""
    spec = request.job.spec
    driver_path = str(driver)
    control_dir = str(request.work_dir / "control")
    session_spec = spec.model_copy(update={"args": [control_dir, *spec.args]})

    def resolve(ref: str, field: str) -> str:
        return driver_path if field == "application" else request.resolve(ref, field)

    return backend.submit_args(
        replace(request, job=replace(request.job, spec=session_spec), resolve=resolve)
    )


def connect_submit_args(backend: SparkBackend, request: LaunchRequest) -> list[str]:
    return session_submit_args(backend, request, CONNECT_DRIVER)


BUILT_IN_SUBMIT_ARGS = {
    JobKind.SESSION: session_submit_args,
    JobKind.CONNECT: connect_submit_args,
}
