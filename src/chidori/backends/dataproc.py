"""The `dataproc` cluster type: Dataproc Serverless batches through the official
`google-cloud-dataproc` client (the `dataproc` extra; this is the only module that imports
it), over its REST transport.

A job becomes one batch: `pyspark_batch` (a .py application, `py_files`, `jars`, `files`,
`archives`) or `spark_batch` (`main_class`, the application jar and `jars`), with the
cluster's and the job's conf as `runtime_config.properties`, labelled with the job id. The
batch id and the request id are the attempt's idempotency key, so a second submission after
a lost replica finds the first batch (ALREADY_EXISTS answers its name). Cancel goes through
the batch's long-running operation.

Not built: jobs on an existing Dataproc cluster (`JobController.submit_job`); copying the
driver output (it is written under the batch's `runtime_info.output_uri` in Cloud Storage:
Chidori's log only names that place). Not verified against the live service: tested through
the client against a fake at its REST transport (tests/fakes/dataproc_batches.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlsplit

from google.api_core import exceptions as google_errors
from google.auth import credentials as google_credentials
from google.cloud import dataproc_v1
from google.cloud.dataproc_v1.services.batch_controller.transports.rest import (
    BatchControllerRestTransport,
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

Result = TypeVar("Result")

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


def dataproc_state(word: str) -> RemoteState:
    state = BATCH_STATES.get(word)
    if state is None:
        raise BackendError(f"dataproc answered an unknown batch state {word!r}")
    return state


class DataprocBackend(RemoteBackend):
    def __init__(
        self,
        cluster: ClusterConfig,
        settings: RemoteSettings,
        credentials: google_credentials.Credentials,
    ) -> None:
        """`credentials`: Google's own (application default credentials, or a service
        account file), found by the composition root."""
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
        self._timeout = settings.request_timeout

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
        self._batch(spec, "check")

    def submit(self, submission: RemoteSubmission) -> RemoteRun:
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
        batch = self._call(lambda: self._client.get_batch(name=run_id, timeout=self._timeout))
        word = batch.state.name
        return RemoteStatus(
            dataproc_state(word),
            word,
            message=batch.state_message or None,
        )

    def logs(self, run_id: str, start: int, final: bool) -> LogPage:
        if not final or start > 0:
            return LogPage([], start)
        batch = self._call(lambda: self._client.get_batch(name=run_id, timeout=self._timeout))
        where = batch.runtime_info.output_uri
        lines = [f"[dataproc: the driver output is under {where}]"] if where else []
        if batch.state_message:
            lines.append(f"[dataproc: {batch.state_message}]")
        return LogPage(lines, len(lines), len(lines))

    def cancel(self, run_id: str) -> None:
        try:
            batch = self._call(lambda: self._client.get_batch(name=run_id, timeout=self._timeout))
            if batch.operation:
                self._call(lambda: self._client.cancel_operation(request={"name": batch.operation}))
        except NotFound:
            return

    # ---- the batch -----------------------------------------------------------------------------

    def _batch(self, spec: JobSpec, job_id: str) -> dataproc_v1.Batch:
        properties = {**self.cluster.conf, **spec.conf}
        if spec.executor_instances:
            properties["spark.executor.instances"] = str(spec.executor_instances)
        properties |= {
            "spark.driver.memory": spec.driver_memory,
            "spark.driver.cores": str(spec.driver_cores),
            "spark.executor.memory": spec.executor_memory,
            "spark.executor.cores": str(spec.executor_cores),
        }
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
