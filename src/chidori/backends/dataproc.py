"""The `dataproc` cluster type: Dataproc Serverless batches, or jobs on an existing Dataproc
cluster, through the official `google-cloud-dataproc` client (the `dataproc` extra; this is
the only module that imports it), over its REST transport.

Without a cluster to place it on, a job becomes one batch: `pyspark_batch` (a .py
application, `py_files`, `jars`, `files`, `archives`) or `spark_batch` (`main_class`, the
application jar and `jars`), with the cluster's and the job's conf as
`runtime_config.properties`, labelled with the job id. The batch id and the request id are the
attempt's idempotency key, so a second submission after a lost replica finds the first batch
(ALREADY_EXISTS answers its name). Cancel goes through the batch's long-running operation.

With `options.cluster_name` (or, among `options.cluster_names`, the one the job names in its
conf `chidori.dataproc.cluster_name`), a job becomes a `pyspark_job` or `spark_job` submitted
to that cluster (`JobController.submit_job`): its job id and request id are the attempt's key,
so a second submission answers the same job; cancel is `cancel_job`.

The driver output (in Cloud Storage, under the batch's `runtime_info.output_uri` or the job's
`driver_output_resource_uri`) is copied into Chidori's log while the run goes when the
`dataproc-logs` extra is installed (chidori.backends.dataproc_output); without it the log
only names that place. Not verified against the live service: tested through the clients
against fakes at their REST transports (tests/fakes/dataproc_batches.py, gcs_objects.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

from google.api_core import exceptions as google_errors
from google.auth import credentials as google_credentials
from google.cloud import dataproc_v1
from google.cloud.dataproc_v1.services.batch_controller.transports.rest import (
    BatchControllerRestTransport,
)
from google.cloud.dataproc_v1.services.job_controller.transports.rest import (
    JobControllerRestTransport,
)

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
from chidori.domain.errors import BackendError, Conflict, InvalidRequest, NotFound
from chidori.domain.spec import JobKind, JobSpec

if TYPE_CHECKING:
    from chidori.backends.dataproc_output import DriverOutput

Result = TypeVar("Result")
CLUSTER_NAME_CONF = "chidori.dataproc.cluster_name"  # a job's choice among cluster_names

# Every state of a batch (google.cloud.dataproc.v1.Batch.State).
BATCH_STATES: dict[str, RemoteState | None] = {
    "STATE_UNSPECIFIED": None,  # never guessed: refused as unknown
    "PENDING": RemoteState.PENDING,
    "RUNNING": RemoteState.RUNNING,
    "CANCELLING": RemoteState.RUNNING,  # stopping; CANCELLED next
    "CANCELLED": RemoteState.CANCELLED,
    "SUCCEEDED": RemoteState.SUCCEEDED,
    "FAILED": RemoteState.FAILED,
}

# Every state of a job on a cluster (google.cloud.dataproc.v1.JobStatus.State).
JOB_STATES: dict[str, RemoteState | None] = {
    "STATE_UNSPECIFIED": None,  # never guessed: refused as unknown
    "PENDING": RemoteState.PENDING,
    "SETUP_DONE": RemoteState.PENDING,  # the driver is about to start
    "RUNNING": RemoteState.RUNNING,
    "CANCEL_PENDING": RemoteState.RUNNING,  # stopping; CANCELLED next
    "CANCEL_STARTED": RemoteState.RUNNING,
    "CANCELLED": RemoteState.CANCELLED,
    "DONE": RemoteState.SUCCEEDED,
    "ERROR": RemoteState.FAILED,
    "ATTEMPT_FAILURE": RemoteState.RUNNING,  # a restartable job's attempt failed: it restarts
}


def dataproc_state(word: str, states: dict[str, RemoteState | None] = BATCH_STATES) -> RemoteState:
    state = states.get(word)
    if state is None:
        what = "job" if states is JOB_STATES else "batch"
        raise BackendError(f"dataproc answered an unknown {what} state {word!r}")
    return state


class DataprocBackend(RemoteBackend):
    def __init__(
        self,
        cluster: ClusterConfig,
        settings: RemoteSettings,
        credentials: google_credentials.Credentials,
        output: DriverOutput | None = None,
    ) -> None:
        """`credentials`: Google's own (application default credentials, or a service
        account file), found by the composition root. `output`: the driver output reader
        (None without the dataproc-logs extra)."""
        super().__init__(cluster)
        options = dict(settings.options)
        self._project = str(options.get("project") or "")
        self._region = str(options.get("region") or "")
        if not self._project or not self._region:
            raise BackendError("a dataproc cluster needs options.project and options.region")
        url = urlsplit(settings.url)
        transport = BatchControllerRestTransport(
            host=url.netloc, credentials=credentials, url_scheme=url.scheme
        )
        self._client = dataproc_v1.BatchControllerClient(transport=transport)
        jobs_transport = JobControllerRestTransport(
            host=url.netloc, credentials=credentials, url_scheme=url.scheme
        )
        self._jobs = dataproc_v1.JobControllerClient(transport=jobs_transport)
        self._timeout = settings.request_timeout
        self._output = output
        self._cluster_name = str(options.get("cluster_name") or "")
        names = options.get("cluster_names") or []
        if not isinstance(names, list):
            raise BackendError("options.cluster_names must be a list of Dataproc cluster names")
        self._cluster_names = {str(name) for name in names} | (
            {self._cluster_name} if self._cluster_name else set()
        )

    @property
    def _parent(self) -> str:
        return f"projects/{self._project}/locations/{self._region}"

    def check_spec(self, spec: JobSpec) -> None:
        if spec.kind is not JobKind.SPARK:
            raise InvalidRequest.for_field("kind", "a dataproc cluster runs Spark jobs only")
        for name in ("application", "py_files", "jars", "files", "archives"):
            value = getattr(spec, name)
            for entry in value if isinstance(value, list) else [value]:
                if entry.startswith("upload://"):
                    raise InvalidRequest.for_field(
                        name, "dataproc cannot read files uploaded to Chidori: name a gs:// URI"
                    )
        if self._placement(spec):
            self._job(spec, "check", "check")
        else:
            self._batch(spec, "check")

    def submit(self, submission: RemoteSubmission) -> RemoteRun:
        if self._placement(submission.job.spec):
            return self._submit_job(submission)
        name = f"{self._parent}/batches/{submission.key}"
        request = dataproc_v1.CreateBatchRequest(
            parent=self._parent,
            batch=self._batch(submission.job.spec, str(submission.job.id)),
            batch_id=submission.key,
            request_id=submission.key,
        )
        # ALREADY_EXISTS (Conflict): an earlier submission of this attempt made the batch.
        with contextlib.suppress(Conflict):
            self._call(lambda: self._client.create_batch(request=request, timeout=self._timeout))
        return RemoteRun(name, self._console(submission.key))

    def status(self, run_id: str) -> RemoteStatus:
        if _job_id(run_id):
            job = self._get_job(run_id)
            word = job.status.state.name
            return RemoteStatus(
                dataproc_state(word, JOB_STATES), word, message=job.status.details or None
            )
        batch = self._call(lambda: self._client.get_batch(name=run_id, timeout=self._timeout))
        word = batch.state.name
        return RemoteStatus(
            dataproc_state(word),
            word,
            message=batch.state_message or None,
        )

    def logs(self, run_id: str, start: int, final: bool) -> LogPage:
        if _job_id(run_id):
            job = self._get_job(run_id)
            where, message = job.driver_output_resource_uri, job.status.details
        else:
            batch = self._call(lambda: self._client.get_batch(name=run_id, timeout=self._timeout))
            where, message = batch.runtime_info.output_uri, batch.state_message
        if self._output is not None and where:
            page = self._output.read(where, start, final)
            notes = [f"[dataproc: {message}]"] if final and message else []
            return LogPage([*page.lines, *notes], page.next_start + len(notes))
        if not final or start > 0:
            return LogPage([], start)
        lines = [f"[dataproc: the driver output is under {where}]"] if where else []
        if message:
            lines.append(f"[dataproc: {message}]")
        return LogPage(lines, len(lines), len(lines))

    def cancel(self, run_id: str) -> None:
        job_id = _job_id(run_id)
        if job_id:

            def cancel_job() -> None:
                try:
                    self._jobs.cancel_job(
                        project_id=self._project, region=self._region, job_id=job_id,
                        timeout=self._timeout,
                    )  # fmt: skip
                except google_errors.GoogleAPICallError as exc:
                    if not _over_already(exc):
                        raise

            with contextlib.suppress(NotFound):  # over and forgotten
                self._call(cancel_job)
            return
        try:
            batch = self._call(lambda: self._client.get_batch(name=run_id, timeout=self._timeout))
            if batch.operation:
                self._call(lambda: self._client.cancel_operation(request={"name": batch.operation}))
        except NotFound:
            return

    # ---- jobs on a cluster -------------------------------------------------------------------

    def _placement(self, spec: JobSpec) -> str:
        """The cluster the job goes to ("" for a batch): the job's choice among
        `cluster_names`, else `cluster_name`."""
        chosen = spec.conf.get(CLUSTER_NAME_CONF)
        if chosen is None:
            return self._cluster_name
        if chosen not in self._cluster_names:
            allowed = ", ".join(sorted(self._cluster_names)) or "none"
            raise InvalidRequest.for_field(
                f"conf.{CLUSTER_NAME_CONF}",
                f"not a Dataproc cluster this Chidori cluster may use (allowed: {allowed})",
            )
        return chosen

    def _submit_job(self, submission: RemoteSubmission) -> RemoteRun:
        spec = submission.job.spec
        request = dataproc_v1.SubmitJobRequest(
            project_id=self._project,
            region=self._region,
            job=self._job(spec, str(submission.job.id), submission.key),
            request_id=submission.key,
        )
        # ALREADY_EXISTS: an earlier submission of this attempt made the job (another
        # request id); the same request id answers the same job.
        with contextlib.suppress(Conflict):
            self._call(lambda: self._jobs.submit_job(request=request, timeout=self._timeout))
        name = f"projects/{self._project}/regions/{self._region}/jobs/{submission.key}"
        return RemoteRun(name, self._job_console(submission.key))

    def _get_job(self, run_id: str) -> dataproc_v1.Job:
        return self._call(lambda: self._jobs.get_job(
            project_id=self._project, region=self._region, job_id=_job_id(run_id),
            timeout=self._timeout,
        ))  # fmt: skip

    def _job(self, spec: JobSpec, job_id: str, key: str) -> dataproc_v1.Job:
        properties = {k: v for k, v in self._properties(spec).items() if k != CLUSTER_NAME_CONF}
        job = dataproc_v1.Job(
            reference=dataproc_v1.JobReference(project_id=self._project, job_id=key),
            placement=dataproc_v1.JobPlacement(cluster_name=self._placement(spec)),
            labels={"chidori-job": job_id},
        )
        if spec.main_class:
            job.spark_job = dataproc_v1.SparkJob(
                main_class=spec.main_class,
                jar_file_uris=[spec.application, *spec.jars],
                args=list(spec.args),
                file_uris=list(spec.files),
                archive_uris=list(spec.archives),
                properties=properties,
            )
        elif spec.application.endswith(".py"):
            job.pyspark_job = dataproc_v1.PySparkJob(
                main_python_file_uri=spec.application,
                args=list(spec.args),
                python_file_uris=list(spec.py_files),
                jar_file_uris=list(spec.jars),
                file_uris=list(spec.files),
                archive_uris=list(spec.archives),
                properties=properties,
            )
        else:
            raise InvalidRequest.for_field(
                "application", "dataproc runs a .py file, or a jar with main_class"
            )
        return job

    def _job_console(self, job_id: str) -> str:
        return (
            f"https://console.cloud.google.com/dataproc/jobs/{job_id}"
            f"?region={self._region}&project={self._project}"
        )

    # ---- the batch -----------------------------------------------------------------------------

    def _properties(self, spec: JobSpec) -> dict[str, str]:
        properties = {**self.cluster.conf, **spec.conf}
        if spec.executor_instances:
            properties["spark.executor.instances"] = str(spec.executor_instances)
        properties |= {
            "spark.driver.memory": spec.driver_memory,
            "spark.driver.cores": str(spec.driver_cores),
            "spark.executor.memory": spec.executor_memory,
            "spark.executor.cores": str(spec.executor_cores),
        }
        return properties

    def _batch(self, spec: JobSpec, job_id: str) -> dataproc_v1.Batch:
        properties = self._properties(spec)
        batch = dataproc_v1.Batch(
            runtime_config=dataproc_v1.RuntimeConfig(properties=properties),
            labels={"chidori-job": job_id},
        )
        if spec.main_class:
            batch.spark_batch = dataproc_v1.SparkBatch(
                main_class=spec.main_class,
                jar_file_uris=[spec.application, *spec.jars],
                args=list(spec.args),
                file_uris=list(spec.files),
                archive_uris=list(spec.archives),
            )
        elif spec.application.endswith(".py"):
            batch.pyspark_batch = dataproc_v1.PySparkBatch(
                main_python_file_uri=spec.application,
                args=list(spec.args),
                python_file_uris=list(spec.py_files),
                jar_file_uris=list(spec.jars),
                file_uris=list(spec.files),
                archive_uris=list(spec.archives),
            )
        else:
            raise InvalidRequest.for_field(
                "application", "dataproc runs a .py file, or a jar with main_class"
            )
        return batch

    def _console(self, batch_id: str) -> str:
        return (
            f"https://console.cloud.google.com/dataproc/batches/{self._region}/{batch_id}"
            f"/monitoring?project={self._project}"
        )

    def _call(self, call: Callable[[], Result]) -> Result:
        """One client call, its errors in Chidori's terms (one table)."""
        try:
            return call()
        except google_errors.GoogleAPICallError as exc:
            raise _translated(exc) from exc
        except google_errors.RetryError as exc:
            raise RemoteUnavailable(f"dataproc: {exc}") from exc
        except OSError as exc:
            raise RemoteUnavailable(f"dataproc: {exc}") from exc


def _job_id(run_id: str) -> str:
    """The job id of a cluster job's run id (projects/P/regions/R/jobs/ID); "" for a batch."""
    parts = run_id.split("/")
    return parts[5] if len(parts) == 6 and parts[4] == "jobs" else ""


def _over_already(exc: google_errors.GoogleAPICallError) -> bool:
    """FAILED_PRECONDITION, the answer to cancelling a job that is over. Over REST it is a
    400, told apart only by the answer's `error.status`."""
    if isinstance(exc, google_errors.FailedPrecondition):
        return True
    try:
        error = exc.response.json().get("error") or {}
        return bool(error.get("status") == "FAILED_PRECONDITION")
    except (AttributeError, ValueError, TypeError):
        return False


def _translated(exc: google_errors.GoogleAPICallError) -> Exception:
    message = f"dataproc: {exc.message}"[:600]
    if isinstance(exc, google_errors.TooManyRequests | google_errors.ResourceExhausted) or (
        "QUOTA_EXCEEDED" in str(exc) or "RESOURCE_EXHAUSTED" in str(exc)
    ):
        return QuotaRefused(f"dataproc refused for quota: {exc.message}"[:600])
    if isinstance(exc, google_errors.AlreadyExists | google_errors.Conflict):
        return Conflict(message)  # ALREADY_EXISTS: the batch of this key is there
    if isinstance(exc, google_errors.NotFound):
        return NotFound(message)
    if isinstance(
        exc,
        google_errors.ServiceUnavailable
        | google_errors.InternalServerError
        | google_errors.DeadlineExceeded
        | google_errors.GatewayTimeout,
    ):
        return RemoteUnavailable(message)
    return BackendError(message)
