"""The `kubernetes` cluster type: the driver runs in Chidori's own pod (client mode), Spark asks
the API server for executor pods only.

Per attempt the backend sets:
- the driver's address to this pod's IP (`spark.driver.host` and `spark.driver.bindAddress`:
  Spark 4.3 executors are told the bind address);
- `spark.kubernetes.driver.pod.name` to this pod, so executor pods get an owner reference to
  it (deleting the pod deletes them; a container restart does not: the sweep does);
- labels `chidori.io/installation`, `chidori.io/job`, `chidori.io/attempt`,
  `chidori.io/server` on every executor pod, and a unique executor pod name prefix;
- an executor pod template generated from the cluster's settings and the pool the job chose;
- the driver's credentials: a short-lived token of the executor service account (a
  TokenRequest), never the server's own, and never anyone's `~/.kube/config`.

Backends are stateless: what an attempt created is found again by its labels (`cleanup`,
`sweep`), and node capacity is read fresh from the API (`node_views`).
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from chidori.backends.base import DriverCommand, LaunchRequest
from chidori.backends.kubernetes.api import KubeApi
from chidori.backends.kubernetes.pod_template import (
    ATTEMPT_LABEL,
    INSTALLATION_LABEL,
    JOB_LABEL,
    SERVER_LABEL,
    JobChoiceError,
    executor_conf,
    executor_demand,
    executor_pod_template,
    forbidden_conf,
    resolve_pool,
)
from chidori.backends.kubernetes.views import node_views
from chidori.backends.spark import SparkBackend
from chidori.config import ClusterConfig
from chidori.config.kubernetes import KubernetesSettings
from chidori.domain.errors import BackendError, InvalidRequest
from chidori.domain.nodes import ExecutorGang, NodeView, Toleration
from chidori.domain.spec import JobKind, JobSpec
from chidori.domain.warm import EXECUTORS_AT_HANDOVER
from chidori.storage.files import write_private

DRIVER_TOKEN_SECONDS = 7 * 24 * 3600  # the longest a job may run with one token (renewed: no)


def label_value(text: str) -> str:
    """`text` as a valid label value (63 characters of [A-Za-z0-9._-], alphanumeric ends)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "-", text)[:63]
    return cleaned.strip("-_.") or "x"


class KubernetesBackend(SparkBackend):
    """Hosted drivers whose executors are pods of one namespace."""

    def __init__(
        self,
        cluster: ClusterConfig,
        base_env: dict[str, str],
        event_log_dir: Path | None,
        *,
        server_id: str,
        pod_name: str | None,
        pod_ip: str | None,
        api: KubeApi,
        live_progress: bool = True,
    ) -> None:
        super().__init__(cluster, base_env, event_log_dir, live_progress=live_progress)
        if cluster.kubernetes is None:
            raise BackendError(f"cluster {cluster.name!r} has no Kubernetes settings")
        self.settings: KubernetesSettings = cluster.kubernetes
        self.api = api
        self._server_label = label_value(server_id)
        self._pod_name = pod_name
        self._pod_ip = pod_ip or "127.0.0.1"

    @property
    def master(self) -> str:
        return f"k8s://{self.api.host}"

    # ---- labels ------------------------------------------------------------------------------

    @property
    def installation(self) -> str:
        return self.settings.installation

    def attempt_labels(self, job_id: int, attempt: int) -> dict[str, str]:
        return {
            INSTALLATION_LABEL: self.installation,
            JOB_LABEL: str(job_id),
            ATTEMPT_LABEL: str(attempt),
            SERVER_LABEL: self._server_label,
        }

    def selector(self, job_id: int | None = None, attempt: int | None = None) -> str:
        parts = [f"{INSTALLATION_LABEL}={self.installation}"]
        if job_id is not None:
            parts.append(f"{JOB_LABEL}={job_id}")
        if attempt is not None:
            parts.append(f"{ATTEMPT_LABEL}={attempt}")
        return ",".join(parts)

    def server_selector(self) -> str:
        return f"{self.selector()},{SERVER_LABEL}={self._server_label}"

    # ---- checks at submission ----------------------------------------------------------------

    def check_spec(self, spec: JobSpec) -> None:
        """Refuse (InvalidRequest, naming the key) what a job may not choose on this cluster."""
        bad = forbidden_conf(dict(spec.conf))
        if bad:
            raise InvalidRequest.for_field(
                "conf",
                f"{', '.join(sorted(bad))}: set by Chidori on cluster {self.cluster.name!r}; "
                "choose among the admin's settings instead",
            )
        try:
            conf = self._job_conf(spec)
            executor_conf(self.settings, resolve_pool(self.settings, conf), conf)
        except JobChoiceError as exc:
            raise InvalidRequest.for_field("conf", str(exc)) from exc

    def _job_conf(self, spec: JobSpec) -> dict[str, str]:
        """The cluster's conf, then the job's resources and own conf (what Spark would get
        before Chidori's per-attempt keys)."""
        conf = dict(self.settings.conf)
        conf.update(self._resource_conf(spec))
        conf.update(spec.conf)
        return conf

    # ---- launching ---------------------------------------------------------------------------

    def _start_conf(self) -> dict[str, str]:
        conf = super()._start_conf()
        conf.update(
            {
                "spark.kubernetes.namespace": self.api.namespace,
                "spark.kubernetes.container.image": self.settings.image,
                "spark.driver.host": self._pod_ip,
                "spark.driver.bindAddress": self._pod_ip,
                # The driver's conf files are not needed by executors; a ConfigMap per
                # attempt would be one more object to clean up.
                "spark.kubernetes.executor.disableConfigMap": "true",
                # On-demand PVCs belong to their executor pod (deleted with it), not to
                # Chidori's pod, which outlives every job.
                "spark.kubernetes.driver.ownPersistentVolumeClaim": "false",
                "spark.kubernetes.driver.reusePersistentVolumeClaim": "false",
                "spark.kubernetes.executor.deleteOnTermination": "true",
            }
        )
        if self.settings.image_pull_policy:
            conf["spark.kubernetes.container.image.pullPolicy"] = self.settings.image_pull_policy
        if self.settings.service_account:
            conf["spark.kubernetes.authenticate.executor.serviceAccountName"] = (
                self.settings.service_account
            )
        if self._pod_name:
            conf["spark.kubernetes.driver.pod.name"] = self._pod_name
        return conf

    def _attempt_conf(self, request: LaunchRequest) -> dict[str, str]:
        """This attempt's pod template and credentials, written into its work folder, and
        the conf that points at them (over the job's own: these are Chidori's to set)."""
        job, attempt = request.job, request.attempt
        labels = self.attempt_labels(job.id, attempt)
        job_conf = self._job_conf(job.spec)
        try:
            pool = resolve_pool(self.settings, job_conf)
            conf = executor_conf(self.settings, pool, job_conf, labels=labels)
        except JobChoiceError as exc:
            raise InvalidRequest.for_field("conf", str(exc)) from exc
        conf.update(
            self._executor_pods(
                request.work_dir, pool, labels, f"chidori-{job.id}-{attempt}-{secrets.token_hex(3)}"
            )
        )
        return conf

    def _executor_pods(
        self, folder: Path, pool: str | None, labels: Mapping[str, str], name_prefix: str
    ) -> dict[str, str]:
        """The executor pod template (written into `folder`), the pods' name prefix and labels,
        and the driver's credentials (also in `folder`): what a cold or warm driver starts with."""
        template = executor_pod_template(self.settings, pool, labels)
        template_path = folder / "executor-pod.json"
        write_private(template_path, json.dumps(template, indent=1))
        conf = {
            "spark.kubernetes.executor.podTemplateFile": str(template_path),
            "spark.kubernetes.executor.podNamePrefix": name_prefix,
            **{f"spark.kubernetes.executor.label.{k}": v for k, v in labels.items()},
        }
        conf.update(self._credentials(folder))
        return conf

    def _credentials(self, work_dir: Path) -> dict[str, str]:
        conf: dict[str, str] = {}
        account = self.settings.driver_service_account
        if account:
            token_path = work_dir / "kubernetes-token"
            write_private(token_path, self.api.token_for(account, DRIVER_TOKEN_SECONDS))
            conf["spark.kubernetes.authenticate.oauthTokenFile"] = str(token_path)
        if self.api.ca_cert:
            ca_path = work_dir / "kubernetes-ca.crt"
            write_private(ca_path, Path(self.api.ca_cert).read_text())
            conf["spark.kubernetes.authenticate.caCertFile"] = str(ca_path)
        return conf

    # ---- warm drivers ------------------------------------------------------------------------

    def warm_conf(self) -> dict[str, str] | None:
        """A warm driver here starts with no executors (it holds no pods while idle) and asks
        for the job's at hand-over; their size, the pool (the default one) and the rest of the
        conf are fixed at its start."""
        pool = self.cluster.warm_pool
        conf = self._start_conf()
        defaults = {
            "spark.executor.memory": self.settings.executor.memory,
            "spark.executor.cores": str(self.settings.executor.cores),
        }
        try:
            conf.update(executor_conf(self.settings, self.settings.default_pool, defaults))
        except JobChoiceError:
            return None
        conf.update(defaults)
        # spark-submit refuses 0 executors: the warm driver sets it before its session starts.
        conf.pop("spark.executor.instances", None)
        conf.update(
            {
                "spark.dynamicAllocation.enabled": "false",
                EXECUTORS_AT_HANDOVER: "true",
                "spark.driver.memory": pool.driver_memory,
                "spark.driver.cores": str(pool.driver_cores),
                "spark.app.name": "chidori-warm",
            }
        )
        conf.update(pool.conf)
        return conf

    def _warm_driver_conf(self, control_dir: Path) -> dict[str, str]:
        """The warm driver's pod template (labels without a job yet: the driver adds the job's
        at hand-over, before it asks for executors; Spark reads the template for each pod it
        builds), its executor name prefix and its credentials."""
        labels = {INSTALLATION_LABEL: self.installation, SERVER_LABEL: self._server_label}
        return self._executor_pods(
            control_dir,
            self.settings.default_pool,
            labels,
            f"chidori-warm-{secrets.token_hex(4)}",
        )

    def warm_job(self, request: LaunchRequest) -> dict[str, object]:
        """As on local clusters, plus the executors to ask for and the labels they carry."""
        job = super().warm_job(request)
        spec = request.job.spec
        job["executors"] = spec.executor_instances or self.settings.executor.instances
        job["executor_labels"] = self.attempt_labels(request.job.id, request.attempt)
        return job

    def _environment(
        self, request: LaunchRequest | None, spark_home: Path | None
    ) -> dict[str, str]:
        env = super()._environment(request, spark_home)
        # fabric8 (Spark's client) would read ~/.kube/config, $KUBECONFIG and the pod's own
        # service-account token by itself: the driver gets only what Chidori hands it.
        env.pop("KUBECONFIG", None)
        env["KUBERNETES_AUTH_TRYKUBECONFIG"] = "false"
        env["KUBERNETES_AUTH_TRYSERVICEACCOUNT"] = "false"
        env["SPARK_LOCAL_IP"] = self._pod_ip
        return env

    def driver_command(self, request: LaunchRequest) -> DriverCommand:
        if request.job.spec.kind is JobKind.PYTHON:
            return self._python_command(request)
        return super().driver_command(request)

    # ---- what attempts leave behind ----------------------------------------------------------

    def cleanup(self, job_id: int, attempt: int) -> None:
        """Delete the attempt's executor pods, ConfigMaps and PVCs (by label). Idempotent."""
        self.api.delete_labeled(self.selector(job_id, attempt))

    def sweep(self, active: set[tuple[int, int]]) -> list[str]:
        """Delete this installation's objects whose attempt is not in `active`; returns what
        was deleted (`kind/name`)."""
        deleted = []
        for kind, item in self.api.labeled(self.selector()):
            meta = item.get("metadata") or {}
            labels = meta.get("labels") or {}
            try:
                key = (int(labels.get(JOB_LABEL, "")), int(labels.get(ATTEMPT_LABEL, "")))
            except ValueError:
                key = None
            if key is not None and key in active:
                continue
            if meta.get("deletionTimestamp"):
                continue
            self.api.delete(kind, str(meta.get("name")))
            deleted.append(f"{kind}/{meta.get('name')}")
        return deleted

    # ---- node-aware admission ----------------------------------------------------------------

    def node_views(self) -> list[NodeView]:
        return node_views(self.api.nodes(), self.api.bound_pods())

    def gang_of(self, spec: JobSpec) -> ExecutorGang | None:
        """The executors a job must fit on the nodes before it starts (its gang minimum)."""
        if spec.kind is JobKind.PYTHON:
            return None
        job_conf = self._job_conf(spec)
        try:
            pool = resolve_pool(self.settings, job_conf)
            final = {**job_conf, **executor_conf(self.settings, pool, job_conf)}
            demand = executor_demand(self.settings, final)
        except JobChoiceError:
            return None  # refused at submission; a config changed since fails it at launch
        template = executor_pod_template(self.settings, pool, {})
        pod_spec: Mapping[str, Any] = template.get("spec") or {}
        return ExecutorGang(
            count=demand.executors,
            millicores=demand.millicores,
            memory_bytes=demand.memory_bytes,
            node_selector=dict(pod_spec.get("nodeSelector") or {}),
            tolerations=tuple(
                Toleration(
                    str(t.get("key") or ""),
                    str(t.get("operator") or "Equal"),
                    str(t.get("value") or ""),
                    str(t.get("effect") or ""),
                )
                for t in pod_spec.get("tolerations") or []
            ),
        )
