"""The `livy` cluster type: batches on any Livy server (HDInsight, EMR, on-premises Livy,
another Chidori), through Livy's REST API with httpx.

`POST /batches` submits (the batch's `name` is the attempt's idempotency key: Livy has no
key of its own, so a submission that may have been made before first looks for a batch of
that name), `GET /batches/{id}/state` and `GET /batches/{id}` poll, `GET /batches/{id}/log`
pages the driver log, `DELETE /batches/{id}` cancels. Basic auth (`username` with
`password_env`/`password_file`) or a bearer token (`token_env`/`token_file`).

The application and its files are sent as named: they must be paths or URLs the Livy server
can read (hdfs://, abfs://, s3://, https://, or a path on its side); files uploaded to Chidori
are refused at submission, since Livy cannot fetch them from here.
"""

from __future__ import annotations

from typing import Any

import httpx

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

# Every state of a Livy batch (Livy's SessionState), for ours.
LIVY_STATES: dict[str, RemoteState] = {
    "not_started": RemoteState.PENDING,
    "starting": RemoteState.PENDING,
    "recovering": RemoteState.PENDING,  # the Livy server restarted and is finding the batch
    "idle": RemoteState.RUNNING,
    "running": RemoteState.RUNNING,
    "busy": RemoteState.RUNNING,
    "shutting_down": RemoteState.RUNNING,  # ending; its outcome is the next state
    "success": RemoteState.SUCCEEDED,
    "error": RemoteState.FAILED,
    "dead": RemoteState.FAILED,
    "killed": RemoteState.CANCELLED,
}
_QUOTA_WORDS = ("RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", "quota")
_LOG_PAGE = 1000  # lines per log request
_FIND_PAGE = 100  # batches per page when looking for an earlier submission
_FIND_LIMIT = 2000  # batches looked at, at most


def livy_state(word: str) -> RemoteState:
    try:
        return LIVY_STATES[word]
    except KeyError:
        raise BackendError(f"livy answered an unknown batch state {word!r}") from None


class LivyBackend(RemoteBackend):
    def __init__(
        self,
        cluster: ClusterConfig,
        settings: RemoteSettings,
        auth: httpx.Auth | None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """`auth`: built by the composition root from the secret it read (never kept here
        as text). `transport`: tests only."""
        super().__init__(cluster)
        self._settings = settings
        self._client = httpx.Client(
            base_url=settings.url,
            auth=auth,
            timeout=settings.request_timeout,
            verify=settings.verify,
            transport=transport,
            headers={"X-Requested-By": "chidori"},  # Livy's CSRF check, where enabled
        )

    def check_spec(self, spec: JobSpec) -> None:
        if spec.kind is not JobKind.SPARK:
            raise InvalidRequest.for_field("kind", "a livy cluster runs Spark batches only")
        for name in ("application", "py_files", "jars", "files", "archives"):
            value = getattr(spec, name)
            for entry in value if isinstance(value, list) else [value]:
                if entry.startswith("upload://"):
                    raise InvalidRequest.for_field(
                        name,
                        "a livy cluster cannot read files uploaded to Chidori: name a path "
                        "or URL its Livy server can read (hdfs://, abfs://, s3://, https://)",
                    )

    # ---- the interface ---------------------------------------------------------------------

    def submit(self, submission: RemoteSubmission) -> RemoteRun:
        if submission.maybe_submitted:
            found = self._find(submission.key)
            if found is not None:
                return found
        answer = self._call("POST", "/batches", json=self._batch(submission))
        return RemoteRun(str(answer["id"]), self._page(answer))

    def status(self, run_id: str) -> RemoteStatus:
        answer = self._call("GET", f"/batches/{_batch_id(run_id)}")
        word = str(answer.get("state"))
        return RemoteStatus(
            livy_state(word),
            word,
            message=None,
            app_id=answer.get("appId") or None,
            url=self._page(answer),
        )

    def logs(self, run_id: str, start: int, final: bool) -> LogPage:
        answer = self._call(
            "GET",
            f"/batches/{_batch_id(run_id)}/log",
            params={"from": start, "size": _LOG_PAGE},
        )
        lines = [str(line) for line in answer.get("log") or []]
        first = int(answer.get("from", start))
        total = int(answer.get("total", first + len(lines)))
        if first != start:  # Livy keeps only its newest lines: some were dropped before we read
            start = first
        if not final and lines and first + len(lines) >= total:
            lines = lines[:-1]  # the last line may still be growing
        return LogPage(lines, start + len(lines), total)

    def cancel(self, run_id: str) -> None:
        try:
            self._call("DELETE", f"/batches/{_batch_id(run_id)}")
        except NotFound:
            return  # already over and forgotten

    # ---- Livy's side -----------------------------------------------------------------------

    def _batch(self, submission: RemoteSubmission) -> dict[str, Any]:
        spec = submission.job.spec
        body: dict[str, Any] = {
            "file": spec.application,
            "name": submission.key,  # found again by it (see `_find`)
            "args": list(spec.args),
            "driverMemory": spec.driver_memory,
            "driverCores": spec.driver_cores,
            "executorMemory": spec.executor_memory,
            "executorCores": spec.executor_cores,
            "conf": {**self.cluster.conf, **spec.conf, **submission.conf},
        }
        if spec.executor_instances:
            body["numExecutors"] = spec.executor_instances
        if spec.main_class:
            body["className"] = spec.main_class
        for field, key in (
            ("py_files", "pyFiles"),
            ("jars", "jars"),
            ("files", "files"),
            ("archives", "archives"),
        ):
            if getattr(spec, field):
                body[key] = list(getattr(spec, field))
        return body

    def _find(self, key: str) -> RemoteRun | None:
        """The batch an earlier submission of this attempt made, by its name."""
        start = 0
        while start < _FIND_LIMIT:
            answer = self._call("GET", "/batches", params={"from": start, "size": _FIND_PAGE})
            batches = answer.get("sessions") or []
            for batch in batches:
                if batch.get("name") == key:
                    return RemoteRun(str(batch["id"]), self._page(batch))
            if len(batches) < _FIND_PAGE:
                return None
            start += len(batches)
        return None

    def _page(self, batch: dict[str, Any]) -> str | None:
        """The service's Spark UI of the batch (`appInfo.sparkUiUrl`: YARN's proxy, then its
        History Server), once Livy knows it; the job page links it as "Spark UI (service)".
        `driverLogUrl` is not taken: the driver log is copied into Chidori's own."""
        info = batch.get("appInfo") or {}
        url = info.get("sparkUiUrl") if isinstance(info, dict) else None
        return str(url) if url else None

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise RemoteUnavailable(f"livy at {self._settings.url}: {exc}") from exc
        if response.status_code < 300:
            try:
                answer = response.json()
            except ValueError as exc:
                raise BackendError(f"livy answered {path} with something not JSON") from exc
            return answer if isinstance(answer, dict) else {}
        raise _error(response, method, path)


def _batch_id(run_id: str) -> int:
    if not run_id.isdigit():
        raise BackendError(f"{run_id!r} is not a Livy batch id")
    return int(run_id)


def _error(response: httpx.Response, method: str, path: str) -> Exception:
    """One table for Livy's answers: quota, try later, gone, refused."""
    try:
        detail = str(response.json().get("msg") or response.text)
    except ValueError:
        detail = response.text
    detail = detail[:500]
    status = response.status_code
    if status == 429 or any(word in detail for word in _QUOTA_WORDS):
        return QuotaRefused(f"livy refused for quota ({status}): {detail}")
    if status >= 500 or status == 408:
        return RemoteUnavailable(f"livy answered {status} to {method} {path}: {detail}")
    if status == 404:
        return NotFound(f"livy: {method} {path}: not found ({detail})")
    if status in (401, 403):
        return BackendError(f"livy refused the credentials ({status}): {detail}")
    return BackendError(f"livy refused {method} {path} ({status}): {detail}")
