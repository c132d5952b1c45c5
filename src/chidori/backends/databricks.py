"""The `databricks` cluster type: one-time runs (`jobs/runs/submit`) through the official
`databricks-sdk` (the `databricks` extra; this is the only module that imports it).

A job becomes one task: `spark_python_task` (a .py application), `spark_jar_task` (a
`main_class`, the application jar and `jars` as libraries) or `python_wheel_task` (a .whl
application, `main_class` as `package_name:entry_point`), on a new job cluster described by
the cluster's options and the spec (`spark_version`, `node_type_id`, workers = the spec's
`executor_instances`, Spark conf = the cluster's conf and the spec's), or on an existing
cluster (`existing_cluster_id`). `idempotency_token` = the attempt's key, so a second
submission after a lost replica answers the first run. The run's output (`runs/get-output`
of its task: `logs`, `error`, `error_trace`) is copied into Chidori's log when it ends.

Not verified against the live service: tested through the SDK against a fake at the HTTP
boundary built from the published Jobs API definitions (tests/fakes/databricks_jobs.py).
With `options.log_dbfs` (a dbfs:/ folder), the new job cluster delivers its logs there
(`cluster_log_conf`) and the driver's `stdout` (`<folder>/<cluster id>/driver/stdout`) is
copied into Chidori's log while the run goes, read through the SDK's DBFS API from the byte
where the last read stopped; the output's `error` and `error_trace` follow at the end. Not
read: rotated files, `stderr`, log4j, and delivery to a volume or S3.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from databricks.sdk import WorkspaceClient
from databricks.sdk.config import Config
from databricks.sdk.errors import (
    InternalError,
    TemporarilyUnavailable,
    TooManyRequests,
)
from databricks.sdk.errors import NotFound as DatabricksNotFound
from databricks.sdk.errors.base import DatabricksError
from databricks.sdk.service import compute, jobs

from chidori.backends.remote import (
    LogPage,
    QuotaRefused,
    RemoteBackend,
    RemoteRun,
    RemoteState,
    RemoteStatus,
    RemoteSubmission,
    RemoteUnavailable,
)
from chidori.config import ClusterConfig
from chidori.config.remote import RemoteSettings
from chidori.domain.errors import BackendError, InvalidRequest, NotFound
from chidori.domain.spec import JobKind, JobSpec

Result = TypeVar("Result")

# Every life_cycle_state: where the run is.
LIFE_CYCLE_STATES: dict[str, RemoteState | None] = {
    "QUEUED": RemoteState.PENDING,
    "PENDING": RemoteState.PENDING,  # its cluster is starting
    "BLOCKED": RemoteState.PENDING,  # waits for an upstream dependency
    "WAITING_FOR_RETRY": RemoteState.PENDING,
    "RUNNING": RemoteState.RUNNING,
    "TERMINATING": RemoteState.RUNNING,  # ending; the outcome is in result_state next
    "TERMINATED": None,  # the result_state says how
    "SKIPPED": RemoteState.FAILED,  # not run (an earlier run was still active)
    "INTERNAL_ERROR": RemoteState.FAILED,
}
# Every result_state of a TERMINATED run.
RESULT_STATES: dict[str, RemoteState] = {
    "SUCCESS": RemoteState.SUCCEEDED,
    "SUCCESS_WITH_FAILURES": RemoteState.SUCCEEDED,  # its leaf task succeeded
    "FAILED": RemoteState.FAILED,
    "TIMEDOUT": RemoteState.FAILED,
    "MAXIMUM_CONCURRENT_RUNS_REACHED": RemoteState.FAILED,
    "EXCLUDED": RemoteState.FAILED,
    "DISABLED": RemoteState.FAILED,
    "UPSTREAM_FAILED": RemoteState.FAILED,
    "CANCELED": RemoteState.CANCELLED,
    "UPSTREAM_CANCELED": RemoteState.CANCELLED,
}
_QUOTA_CODES = ("RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", "REQUEST_LIMIT_EXCEEDED")
_TASK_KEY = "chidori"
_SDK_RETRY_SECONDS = 5
_DBFS_READ = 1024 * 1024  # bytes per DBFS read: the API's largest


def databricks_state(life_cycle: str, result: str | None) -> RemoteState:
    """Ours for a run's (life_cycle_state, result_state); BackendError for one not known."""
    if life_cycle not in LIFE_CYCLE_STATES:
        raise BackendError(f"databricks answered an unknown life_cycle_state {life_cycle!r}")
    state = LIFE_CYCLE_STATES[life_cycle]
    if state is not None:
        return state
    if result not in RESULT_STATES:
        raise BackendError(f"databricks answered an unknown result_state {result!r}")
    return RESULT_STATES[result]


class DatabricksBackend(RemoteBackend):
    def __init__(self, cluster: ClusterConfig, settings: RemoteSettings, token: str) -> None:
        super().__init__(cluster)
        options = dict(settings.options)
        self._existing = options.get("existing_cluster_id")
        self._spark_version = options.get("spark_version")
        self._node_type = options.get("node_type_id")
        self._log_dbfs = str(options.get("log_dbfs") or "").rstrip("/")
        if self._log_dbfs and (self._existing or not self._log_dbfs.startswith("dbfs:/")):
            raise BackendError(
                "options.log_dbfs is a dbfs:/ folder, for new job clusters only (an existing "
                "cluster delivers its logs as it is configured)"
            )
        self._log_offsets: dict[str, tuple[int, int]] = {}  # run -> (lines, byte): a cache
        self._log_lock = threading.Lock()
        if not self._existing and not (self._spark_version and self._node_type):
            raise BackendError(
                "a databricks cluster needs options.existing_cluster_id, or "
                "options.spark_version and options.node_type_id for a new job cluster"
            )
        self._client = WorkspaceClient(
            config=Config(
                host=settings.url,
                token=token,
                auth_type="pat",
                http_timeout_seconds=int(settings.request_timeout),
                # The SDK retries throttled calls until this runs out: a quota refusal that
                # lasts waits in the job's backoff instead, not in the watcher's step.
                retry_timeout_seconds=int(options.get("retry_seconds", _SDK_RETRY_SECONDS)),
            )
        )

    def check_spec(self, spec: JobSpec) -> None:
        if spec.kind is not JobKind.SPARK:
            raise InvalidRequest.for_field("kind", "a databricks cluster runs Spark jobs only")
        for name in ("py_files", "files", "archives"):
            if getattr(spec, name):
                raise InvalidRequest.for_field(
                    name, "not supported on databricks: install them as libraries of the job"
                )
        for name in ("application", "jars"):
            value = getattr(spec, name)
            for entry in value if isinstance(value, list) else [value]:
                if entry.startswith("upload://"):
                    raise InvalidRequest.for_field(
                        name, "databricks cannot read files uploaded to Chidori: name a "
                        "workspace, volume, dbfs:/ or cloud storage path",
                    )  # fmt: skip
        self._task(spec)  # refuses a wheel without package_name:entry_point

    # ---- the interface ---------------------------------------------------------------------

    def submit(self, submission: RemoteSubmission) -> RemoteRun:
        spec = submission.job.spec
        task = self._task(spec)
        waiter = self._call(
            lambda: self._client.jobs.submit(
                run_name=submission.key,
                idempotency_token=submission.key,
                tasks=[task],
                timeout_seconds=int(spec.timeout) if spec.timeout else None,
            )
        )
        run_id = str(waiter.run_id)
        run = self._call(lambda: self._client.jobs.get_run(int(run_id)))
        return RemoteRun(run_id, run.run_page_url)

    def status(self, run_id: str) -> RemoteStatus:
        run = self._call(lambda: self._client.jobs.get_run(_run_id(run_id)))
        state = run.state or jobs.RunState()
        life = state.life_cycle_state.value if state.life_cycle_state else "PENDING"
        result = state.result_state.value if state.result_state else None
        return RemoteStatus(
            databricks_state(life, result),
            f"{life}/{result}" if result else life,
            message=state.state_message or None,
            url=run.run_page_url,
        )

    def logs(self, run_id: str, start: int, final: bool) -> LogPage:
        if self._log_dbfs:
            return self._delivered_logs(run_id, start, final)
        if not final:
            return LogPage([], start)  # the output is there once the run has ended
        run = self._call(lambda: self._client.jobs.get_run(_run_id(run_id)))
        task_run = next((t.run_id for t in run.tasks or [] if t.run_id), None)
        if task_run is None:
            return LogPage([], start)
        output = self._call(lambda: self._client.jobs.get_run_output(task_run))
        lines = (output.logs or "").splitlines()
        if output.logs_truncated:
            lines.append("[databricks: the output was truncated]")
        lines += _error_lines(output)
        kept = lines[start:]
        return LogPage(kept, start + len(kept), len(lines))

    def _delivered_logs(self, run_id: str, start: int, final: bool) -> LogPage:
        """The driver's stdout as the cluster delivered it to DBFS, from where the last read
        stopped (or from its start, skipping `start` lines, without a position)."""
        run = self._call(lambda: self._client.jobs.get_run(_run_id(run_id)))
        task = next((t for t in run.tasks or [] if t.run_id), None)
        cluster_id = task.cluster_instance.cluster_id if task and task.cluster_instance else None
        lines: list[str] = []
        with self._log_lock:
            done, offset = self._log_offsets.get(run_id, (0, 0))
        if done != start:
            done, offset = 0, 0
        if cluster_id:
            # The DBFS API takes the absolute path, without the scheme.
            path = f"{self._log_dbfs.removeprefix('dbfs:')}/{cluster_id}/driver/stdout"
            try:
                size = self._call(lambda: self._client.dbfs.get_status(path)).file_size or 0
            except NotFound:
                size = 0  # not delivered yet
            while offset < size:
                read = self._call(
                    partial(self._client.dbfs.read, path, offset=offset, length=_DBFS_READ)
                )
                data = base64.b64decode(read.data or "")
                if not data:
                    break
                whole = len(data) if final and offset + len(data) >= size else data.rfind(b"\n") + 1
                if whole == 0:
                    break  # an unfinished line: held back until it ends
                lines += data[:whole].decode("utf-8", errors="replace").rstrip("\n").split("\n")
                offset += whole
                if whole < len(data) and offset - whole + len(data) >= size:
                    break  # the rest is the unfinished last line: read again next time
        if final and task is not None and task.run_id:
            task_run = task.run_id
            lines += _error_lines(self._call(lambda: self._client.jobs.get_run_output(task_run)))
        skip = start - done
        with self._log_lock:
            self._log_offsets[run_id] = (done + len(lines), offset)
            if final:
                self._log_offsets.pop(run_id, None)
        if skip > len(lines):
            return LogPage([], start)
        return LogPage(lines[skip:], done + len(lines))

    def cancel(self, run_id: str) -> None:
        try:
            self._call(lambda: self._client.jobs.cancel_run(_run_id(run_id)))
        except NotFound:
            return

    # ---- the task ----------------------------------------------------------------------------

    def _task(self, spec: JobSpec) -> jobs.SubmitTask:
        app = spec.application
        libraries = [compute.Library(jar=jar) for jar in spec.jars]
        fields: dict[str, Any] = {}
        if app.endswith(".whl"):
            package, _, entry = (spec.main_class or "").partition(":")
            if not package or not entry:
                raise InvalidRequest.for_field(
                    "main_class", "a wheel on databricks needs main_class package_name:entry_point"
                )
            fields["python_wheel_task"] = jobs.PythonWheelTask(
                package_name=package, entry_point=entry, parameters=list(spec.args)
            )
            libraries.append(compute.Library(whl=app))
        elif spec.main_class:
            fields["spark_jar_task"] = jobs.SparkJarTask(
                main_class_name=spec.main_class, parameters=list(spec.args)
            )
            libraries.insert(0, compute.Library(jar=app))
        elif app.endswith(".py"):
            fields["spark_python_task"] = jobs.SparkPythonTask(
                python_file=app, parameters=list(spec.args)
            )
        else:
            raise InvalidRequest.for_field(
                "application", "databricks runs a .py file, a .whl, or a jar with main_class"
            )
        if self._existing:
            fields["existing_cluster_id"] = str(self._existing)
        else:
            fields["new_cluster"] = compute.ClusterSpec(
                spark_version=str(self._spark_version),
                node_type_id=str(self._node_type),
                num_workers=spec.executor_instances,
                spark_conf={**self.cluster.conf, **spec.conf} or None,
                cluster_log_conf=compute.ClusterLogConf(
                    dbfs=compute.DbfsStorageInfo(destination=self._log_dbfs)
                )
                if self._log_dbfs
                else None,
            )
        return jobs.SubmitTask(task_key=_TASK_KEY, libraries=libraries or None, **fields)

    def _call(self, call: Callable[[], Result]) -> Result:
        """One SDK call, its errors in Chidori's terms (one table: quota, try later, gone)."""
        try:
            return call()
        except DatabricksError as exc:
            raise _translated(exc) from exc
        except (TimeoutError, RuntimeError) as exc:  # the SDK's retries ran out
            cause = exc.__cause__
            if isinstance(cause, DatabricksError):
                raise _translated(cause) from exc
            raise RemoteUnavailable(f"databricks: {exc}") from exc
        except OSError as exc:
            raise RemoteUnavailable(f"databricks: {exc}") from exc


def _error_lines(output: jobs.RunOutput) -> list[str]:
    lines = [f"[databricks: {output.error}]"] if output.error else []
    return lines + (output.error_trace.splitlines() if output.error_trace else [])


def _translated(exc: DatabricksError) -> Exception:
    code = str(getattr(exc, "error_code", "") or "")
    message = f"databricks: {code + ': ' if code else ''}{exc}"[:600]
    if isinstance(exc, TooManyRequests) or code in _QUOTA_CODES:
        return QuotaRefused(f"databricks refused for quota: {exc}"[:600])
    if isinstance(exc, DatabricksNotFound):
        return NotFound(message)
    if isinstance(exc, InternalError | TemporarilyUnavailable):
        return RemoteUnavailable(message)
    return BackendError(message)


def _run_id(run_id: str) -> int:
    if not run_id.isdigit():
        raise BackendError(f"{run_id!r} is not a Databricks run id")
    return int(run_id)
