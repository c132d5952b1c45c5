"""Chidori's own calls to the Kubernetes API, through the official `kubernetes` client.

Only this module imports the client (the `kubernetes` extra). Where the server finds the API:
an explicit kubeconfig file from the cluster's settings, else an explicit `api_server` URL
(with the pod's service-account token and CA when they exist), else the in-cluster service
(`KUBERNETES_SERVICE_HOST`). A developer's own `~/.kube/config` is never read: nothing here
looks at `KUBECONFIG` or the home folder. Answers are read as plain JSON dicts (the typed
models cost more and are not needed). Every client error becomes a `BackendError`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from chidori.domain.errors import BackendError

log = logging.getLogger(__name__)
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
T = TypeVar("T")


class KubeApi:
    """A namespace of one API server, as the server's own identity sees it."""

    def __init__(
        self,
        *,
        api_server: str | None,
        kubeconfig: str | None,
        context: str | None,
        namespace: str | None,
        environ: Mapping[str, str],
        service_account_dir: Path = SERVICE_ACCOUNT_DIR,
        timeout_seconds: float = 10.0,
    ) -> None:
        try:
            from kubernetes import client, config
        except ImportError as exc:  # pragma: no cover - the extra is part of the test install
            raise BackendError(
                "the kubernetes cluster type needs the official client: pip install "
                "'chidori[kubernetes]'"
            ) from exc
        configuration = client.Configuration()
        token_file = service_account_dir / "token"
        ca_file = service_account_dir / "ca.crt"
        try:
            if kubeconfig:
                config.load_kube_config(  # type: ignore[no-untyped-call]
                    config_file=kubeconfig, context=context, client_configuration=configuration
                )
            elif api_server:
                configuration.host = api_server.rstrip("/")
                if token_file.is_file():
                    configuration.api_key = {"authorization": "Bearer " + token_file.read_text()}
                if ca_file.is_file():
                    configuration.ssl_ca_cert = str(ca_file)
            else:
                host = environ.get("KUBERNETES_SERVICE_HOST")
                port = environ.get("KUBERNETES_SERVICE_PORT", "443")
                if not host:
                    raise BackendError(
                        "no Kubernetes API server: set the cluster's api_server or kubeconfig "
                        "(the server does not run in a pod: KUBERNETES_SERVICE_HOST is unset)"
                    )
                configuration.host = f"https://{host}:{port}"
                configuration.api_key = {"authorization": "Bearer " + token_file.read_text()}
                configuration.ssl_ca_cert = str(ca_file)
        except (OSError, config.ConfigException) as exc:
            raise BackendError(f"the Kubernetes client cannot be configured: {exc}") from exc
        namespace_file = service_account_dir / "namespace"
        if not namespace and namespace_file.is_file():
            namespace = namespace_file.read_text().strip()
        self.namespace = namespace or "default"
        self.host = configuration.host
        self.ca_cert: str | None = configuration.ssl_ca_cert
        self._client = client.ApiClient(configuration)
        self._core = client.CoreV1Api(self._client)
        self._timeout = timeout_seconds

    @contextmanager
    def _translated(self, what: str) -> Iterator[None]:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            yield
        except ApiException as exc:
            raise BackendError(f"Kubernetes API: {what}: {exc.status} {exc.reason}") from exc
        except (HTTPError, OSError) as exc:
            raise BackendError(f"Kubernetes API unreachable: {what}: {exc}") from exc

    def _json(self, what: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        with self._translated(what):
            answer = call(*args, _preload_content=False, _request_timeout=self._timeout, **kwargs)
            return json.loads(answer.data or b"null")

    # ---- reads -------------------------------------------------------------------------------

    def pods(self, label_selector: str) -> list[dict[str, Any]]:
        """Pods of this namespace carrying the labels."""
        found = self._json(
            "list pods",
            self._core.list_namespaced_pod,
            self.namespace,
            label_selector=label_selector,
        )
        return list(found.get("items") or [])

    def labeled(self, label_selector: str) -> list[tuple[str, dict[str, Any]]]:
        """(kind, object) of every pod, ConfigMap and PVC of this namespace with the labels."""
        found: list[tuple[str, dict[str, Any]]] = []
        for kind, call in self._kinds().items():
            answer = self._json(
                f"list {kind}", call[0], self.namespace, label_selector=label_selector
            )
            found += [(kind, item) for item in answer.get("items") or []]
        return found

    def nodes(self) -> list[dict[str, Any]]:
        return list(self._json("list nodes", self._core.list_node).get("items") or [])

    def bound_pods(self) -> list[dict[str, Any]]:
        """Every pod of the cluster that holds node capacity (bound, not finished)."""
        found = self._json(
            "list pods of all namespaces",
            self._core.list_pod_for_all_namespaces,
            field_selector="spec.nodeName!=,status.phase!=Succeeded,status.phase!=Failed",
        )
        return list(found.get("items") or [])

    def pod_events(self, pod_name: str) -> list[dict[str, Any]]:
        found = self._json(
            "list events",
            self._core.list_namespaced_event,
            self.namespace,
            field_selector=f"involvedObject.kind=Pod,involvedObject.name={pod_name}",
        )
        return list(found.get("items") or [])

    # ---- writes ------------------------------------------------------------------------------

    def delete_labeled(self, label_selector: str) -> None:
        """Delete every pod, ConfigMap and PVC of this namespace with the labels."""
        for kind, (_, delete) in self._kinds().items():
            self._json(
                f"delete {kind}",
                delete,
                self.namespace,
                label_selector=label_selector,
                propagation_policy="Background",
            )

    def delete(self, kind: str, name: str) -> None:
        from kubernetes.client.exceptions import ApiException

        calls = {
            "pods": self._core.delete_namespaced_pod,
            "configmaps": self._core.delete_namespaced_config_map,
            "persistentvolumeclaims": self._core.delete_namespaced_persistent_volume_claim,
        }
        try:
            self._json(f"delete {kind} {name}", calls[kind], name, self.namespace)
        except BackendError as exc:
            if isinstance(exc.__cause__, ApiException) and exc.__cause__.status == 404:
                return  # already gone
            raise

    def token_for(self, service_account: str, seconds: int) -> str:
        """A short-lived token of `service_account` (TokenRequest): what a driver gets instead
        of the server's own credentials."""
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": seconds},
        }
        answer = self._json(
            f"token for service account {service_account}",
            self._core.create_namespaced_service_account_token,
            service_account,
            self.namespace,
            body,
        )
        token = (answer.get("status") or {}).get("token")
        if not token:
            raise BackendError(f"Kubernetes API gave no token for {service_account!r}")
        return str(token)

    def _kinds(self) -> dict[str, tuple[Callable[..., Any], Callable[..., Any]]]:
        core = self._core
        return {
            "pods": (core.list_namespaced_pod, core.delete_collection_namespaced_pod),
            "configmaps": (
                core.list_namespaced_config_map,
                core.delete_collection_namespaced_config_map,
            ),
            "persistentvolumeclaims": (
                core.list_namespaced_persistent_volume_claim,
                core.delete_collection_namespaced_persistent_volume_claim,
            ),
        }

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]
