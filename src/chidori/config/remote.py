"""Settings of the remote cluster types (`livy`, `databricks`): where the service is and
where its credentials are. A secret is never in the file: only the name of an environment
variable (`password_env`, `token_env`) or of a file (`password_file`, `token_file`) holding it,
read when the server builds the backend."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

REMOTE_CLUSTER_TYPES = ("livy", "databricks", "dataproc")
_SECRET_KEYS = ("password", "token", "client_secret")
_KNOWN = {
    "type", "url", "path_prefix", "username", "password_env", "password_file", "token_env",
    "token_file", "poll_seconds", "request_timeout", "verify", "conf", "options",
}  # fmt: skip


class RemoteConfigError(ValueError):
    pass


@dataclass(frozen=True)
class RemoteSettings:
    url: str
    username: str | None = None
    password_env: str | None = None
    password_file: Path | None = None
    token_env: str | None = None
    token_file: Path | None = None
    poll_seconds: float = 2.0  # how often a run's state and log are read
    request_timeout: float = 30.0
    verify: bool = True  # TLS certificates checked
    options: Mapping[str, Any] = field(default_factory=dict)  # per type (databricks: cluster)

    def secret(self, environ: Mapping[str, str], which: str) -> str | None:
        """The password or token (`which`), from its variable or file; None if neither is
        named. Raises RemoteConfigError when the one named is missing or empty."""
        env_name = self.password_env if which == "password" else self.token_env
        path = self.password_file if which == "password" else self.token_file
        if env_name:
            value = environ.get(env_name, "")
            if not value:
                raise RemoteConfigError(f"{which}_env names {env_name}, which is not set")
            return value
        if path is not None:
            try:
                value = path.read_text().strip()
            except OSError as exc:
                raise RemoteConfigError(f"{which}_file {path}: {exc.strerror}") from exc
            if not value:
                raise RemoteConfigError(f"{which}_file {path} is empty")
            return value
        return None


def _number(raw: Mapping[str, Any], key: str, default: float) -> float:
    value = raw.get(key, default)
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise RemoteConfigError(f"{key} must be a number, not {value!r}") from exc
    if not 0 < number <= 3600:
        raise RemoteConfigError(f"{key} must be between 0 and 3600 seconds")
    return number


def parse_remote_settings(kind: str, raw: Mapping[str, Any]) -> RemoteSettings:
    """The settings of one remote cluster (`kind` one of REMOTE_CLUSTER_TYPES). Raises
    RemoteConfigError naming the key."""
    for key in _SECRET_KEYS:
        if key in raw:
            raise RemoteConfigError(
                f"{key}: a secret does not go in the config file; name the environment "
                f"variable ({key}_env) or the file ({key}_file) that holds it"
            )
    unknown = sorted(set(raw) - _KNOWN)
    if unknown:
        raise RemoteConfigError(f"unknown setting(s) {', '.join(unknown)} for type {kind}")
    url = str(raw.get("url") or "").rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise RemoteConfigError(f"url must be an http(s) URL, not {url!r}")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise RemoteConfigError("url must not carry a query, a fragment or credentials")
    prefix = str(raw.get("path_prefix") or "").strip("/")
    if prefix:
        url = f"{url}/{prefix}"
    if raw.get("password_env") and raw.get("token_env"):
        raise RemoteConfigError("password_env and token_env: name one (basic or bearer auth)")
    options = raw.get("options") or {}
    if not isinstance(options, Mapping):
        raise RemoteConfigError("options must be a mapping")

    def path(key: str) -> Path | None:
        return Path(str(raw[key])) if raw.get(key) else None

    return RemoteSettings(
        url=url,
        username=str(raw["username"]) if raw.get("username") else None,
        password_env=str(raw["password_env"]) if raw.get("password_env") else None,
        password_file=path("password_file"),
        token_env=str(raw["token_env"]) if raw.get("token_env") else None,
        token_file=path("token_file"),
        poll_seconds=_number(raw, "poll_seconds", 2.0),
        request_timeout=_number(raw, "request_timeout", 30.0),
        verify=bool(raw.get("verify", True)),
        options=dict(options),
    )
