"""The remote backends of the configured clusters, with the credentials their settings name
(read here, from the environment or a file, when the server starts; kept only inside each
backend's HTTP client)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from chidori.backends.remote import RemoteBackend
from chidori.config import ClusterConfig, ConfigError
from chidori.config.remote import RemoteConfigError, RemoteSettings
from chidori.domain.errors import BackendError


class BearerAuth(httpx.Auth):
    """`Authorization: Bearer TOKEN` on every request."""

    def __init__(self, token: str) -> None:
        self._header = f"Bearer {token}"

    def auth_flow(self, request: httpx.Request):  # type: ignore[no-untyped-def]
        request.headers["Authorization"] = self._header
        yield request


def http_auth(settings: RemoteSettings, environ: Mapping[str, str]) -> httpx.Auth | None:
    """Basic auth (username and password) or a bearer token, as the settings name them."""
    token = settings.secret(environ, "token")
    if token is not None:
        return BearerAuth(token)
    password = settings.secret(environ, "password")
    if password is not None:
        return httpx.BasicAuth(settings.username or "", password)
    return None


def open_remote_backends(
    clusters: Mapping[str, ClusterConfig], environ: Mapping[str, str]
) -> dict[str, RemoteBackend]:
    """One backend per remote cluster. Raises ConfigError naming the cluster."""
    found: dict[str, RemoteBackend] = {}
    for name, cluster in clusters.items():
        settings = cluster.remote
        if settings is None:
            continue
        try:
            if cluster.type == "livy":
                from chidori.backends.livy import LivyBackend

                found[name] = LivyBackend(cluster, settings, http_auth(settings, environ))
            elif cluster.type == "databricks":
                found[name] = _databricks(cluster, settings, environ)
            elif cluster.type == "dataproc":
                found[name] = _dataproc(cluster, settings)
            else:
                raise ConfigError(f"cluster {name!r}: type {cluster.type!r} is not built yet")
        except (RemoteConfigError, BackendError) as exc:
            raise ConfigError(f"cluster {name!r}: {exc}") from exc
    return found


def _databricks(
    cluster: ClusterConfig, settings: RemoteSettings, environ: Mapping[str, str]
) -> RemoteBackend:
    token = settings.secret(environ, "token")
    if token is None:
        raise RemoteConfigError("a databricks cluster needs token_env or token_file")
    try:
        from chidori.backends.databricks import DatabricksBackend
    except ImportError as exc:
        raise RemoteConfigError(
            "type databricks needs the databricks extra (pip install 'chidori[databricks]')"
        ) from exc
    return DatabricksBackend(cluster, settings, token)


def _dataproc(cluster: ClusterConfig, settings: RemoteSettings) -> RemoteBackend:
    """Google's own credentials: `options.credentials_file` (a service account key), else
    application default credentials; `options.anonymous: true` for an emulator only."""
    try:
        import google.auth
        from google.auth.credentials import AnonymousCredentials
        from google.oauth2 import service_account

        from chidori.backends.dataproc import DataprocBackend
    except ImportError as exc:
        raise RemoteConfigError(
            "type dataproc needs the dataproc extra (pip install 'chidori[dataproc]')"
        ) from exc
    options = dict(settings.options)
    scopes = ["https://www.googleapis.com/auth/cloud-platform"]
    if options.get("anonymous"):
        credentials: Any = AnonymousCredentials()  # type: ignore[no-untyped-call]
    elif options.get("credentials_file"):
        credentials = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
            str(options["credentials_file"]), scopes=scopes
        )
    else:
        try:
            credentials, _ = google.auth.default(scopes=scopes)
        except google.auth.exceptions.DefaultCredentialsError as exc:
            raise RemoteConfigError(f"no Google credentials: {exc}") from exc
    return DataprocBackend(cluster, settings, credentials, _driver_output(settings, credentials))


def _driver_output(settings: RemoteSettings, credentials: Any) -> Any:
    """The Cloud Storage reader of the driver output, when the dataproc-logs extra is there
    (`options.storage_url`: another endpoint, for an emulator); None without it."""
    try:
        from chidori.backends.dataproc_output import DriverOutput
    except ImportError:
        return None
    options = dict(settings.options)
    endpoint = str(options["storage_url"]).rstrip("/") if options.get("storage_url") else None
    return DriverOutput(
        credentials, str(options.get("project") or ""), endpoint, settings.request_timeout
    )
