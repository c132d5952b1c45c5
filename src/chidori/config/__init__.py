"""Settings: environment variables plus an optional YAML or TOML file.

Read once, in the composition root (`chidori.server`), never at import time.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from chidori.config.connect import ConnectConfig, ConnectConfigError, load_connect
from chidori.config.environments import EnvironmentsConfig, load_environments
from chidori.config.kubernetes import (
    KubernetesConfigError,
    KubernetesSettings,
    parse_kubernetes_settings,
)
from chidori.config.remote import (
    REMOTE_CLUSTER_TYPES,
    RemoteConfigError,
    RemoteSettings,
    parse_remote_settings,
)
from chidori.domain.errors import ChidoriError
from chidori.domain.units import format_memory, parse_memory_mib
from chidori.domain.warm import WarmPoolConfig

HOSTED_CLUSTER_TYPES = ("local", "standalone", "kubernetes")
# None: the listener must be told whom to admit (networks, a JWS secret, or both).
SPARK_REST_DEFAULT_NETWORKS: tuple[str, ...] = ()


class ConfigError(ChidoriError):
    code = "config_error"


@dataclass(frozen=True)
class ClusterConfig:
    """A named Spark master jobs can be sent to."""

    name: str
    type: str
    master: str
    conf: Mapping[str, str] = field(default_factory=dict)
    python: str | None = None
    spark_home: str | None = None
    warm_pool: WarmPoolConfig = field(default_factory=WarmPoolConfig)
    kubernetes: KubernetesSettings | None = None  # type kubernetes: its settings
    remote: RemoteSettings | None = None  # remote types (livy, databricks): their settings


ISOLATION_MODES = ("auto", "sandbox", "none")
NETWORK_MODES = ("host", "none")


@dataclass(frozen=True)
class IsolationConfig:
    """How jobs are kept away from the server and from each other (see chidori.host.isolation).

    `auto` sandboxes when the server can (root), and otherwise accepts jobs from admins only;
    `sandbox` refuses to start without it; `none` runs jobs as the server's own user
    (single-tenant: every submitter can read what the server can)."""

    mode: str = "auto"
    uid_range: tuple[int, int] = (40000, 49999)
    lock_dir: Path = Path("/run/chidori/identities")
    hide: tuple[Path, ...] = ()
    expose: tuple[Path, ...] = ()
    shared: tuple[Path, ...] = ()  # folders every job may write (shared scratch space)
    network: str = "host"
    pass_env: tuple[str, ...] = ()


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str
    queue_url: str = "db"
    host: str = "127.0.0.1"
    port: int = 8080
    admin_token: str | None = None
    app_roots: tuple[Path, ...] = ()
    clusters: Mapping[str, ClusterConfig] = field(default_factory=dict)
    max_running_jobs: int | None = 4
    cancel_grace_seconds: float = 5.0
    lease_seconds: float = 15.0
    shutdown_mode: str = "requeue"
    shutdown_grace_seconds: float = 30.0
    lost_retry_limit: int = 3
    max_upload_bytes: int = 512 * 1024 * 1024
    event_log_dir: Path | None = None
    # Live Spark progress read from each hosted driver's event log (docs/progress.md).
    spark_progress: bool = True
    history_server_url: str | None = None
    secret_key: str | None = None
    submit_rate_per_second: float = 50.0
    submit_burst: int = 200
    max_request_bytes: int = 1024 * 1024
    proxy_user_header: str | None = None
    # Reverse proxies whose X-Forwarded-* (and identity) headers are believed; none by default.
    trusted_proxies: tuple[str, ...] = ()
    max_tokens_per_user: int = 50  # live (unrevoked, unexpired) API tokens per user
    auth_failures_per_minute: int = 30  # unknown tokens per client address; 0: no limit
    policy: Mapping[str, Any] = field(default_factory=dict)
    environ: Mapping[str, str] = field(default_factory=dict)
    # Spark's standalone REST submission protocol (`chidori.api.spark_rest`); no port = off.
    spark_rest_port: int | None = None
    spark_rest_allowed_networks: tuple[str, ...] = SPARK_REST_DEFAULT_NETWORKS
    spark_rest_user: str | None = None  # None: the bootstrap admin
    spark_rest_jws_secret: str | None = None
    isolation: IsolationConfig = field(default_factory=IsolationConfig)
    config_file: Path | None = None
    # Shared storage for uploads, logs and event logs (chidori.storage.blobs): "" = the default (the
    # database on PostgreSQL, nothing shared on SQLite), "db", "file:///shared", "s3://b/p".
    storage_url: str = ""
    # Uploads no job used and logs of jobs that ended longer ago than this are removed.
    retention_days: float = 30.0
    # The server log: "text" (for people) or "json" (one object a line, for a log system).
    log_format: str = "text"
    # Per-job Python environments (chidori.config.environments); None: the defaults under home.
    environments: EnvironmentsConfig | None = None
    # The Spark Connect front door (chidori.config.connect); off without a port.
    connect: ConnectConfig = field(default_factory=ConnectConfig)

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"

    @property
    def artifact_dir(self) -> Path:
        return self.home / "artifacts"

    @property
    def work_dir(self) -> Path:
        return self.home / "work"


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"config file {path} is not valid: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top")
    return data


def _cluster(name: str, raw: Mapping[str, Any]) -> ClusterConfig:
    kind = str(raw.get("type", "local"))
    if kind in REMOTE_CLUSTER_TYPES:
        try:
            remote = parse_remote_settings(kind, raw)
        except RemoteConfigError as exc:
            raise ConfigError(f"cluster {name!r}: {exc}") from exc
        conf = raw.get("conf") or {}
        if not isinstance(conf, Mapping):
            raise ConfigError(f"cluster {name!r}: conf must be a mapping")
        return ClusterConfig(
            name=name,
            type=kind,
            master=remote.url,
            conf={str(k): str(v) for k, v in conf.items()},
            remote=remote,
        )
    if kind not in HOSTED_CLUSTER_TYPES:
        raise ConfigError(
            f"cluster {name!r}: type {kind!r} is not supported; use one of "
            + ", ".join(HOSTED_CLUSTER_TYPES + REMOTE_CLUSTER_TYPES)
        )
    kubernetes = None
    master = raw.get("master")
    if kind == "kubernetes":
        try:
            kubernetes = parse_kubernetes_settings(name, raw)
        except KubernetesConfigError as exc:
            raise ConfigError(str(exc)) from exc
        # What the backend starts drivers with is read from the API client at start.
        master = f"k8s://{kubernetes.api_server or 'https://kubernetes.default.svc'}"
    elif kind == "local":
        master = master or "local[*]"
        if not str(master).startswith("local"):
            raise ConfigError(f"cluster {name!r}: a local cluster's master must be local[...]")
    elif not master or not str(master).startswith("spark://"):
        raise ConfigError(f"cluster {name!r}: a standalone cluster needs master: spark://HOST:PORT")
    conf = raw.get("conf") or {}
    if not isinstance(conf, Mapping):
        raise ConfigError(f"cluster {name!r}: conf must be a mapping")
    return ClusterConfig(
        name=name,
        type=kind,
        master=str(master),
        conf={str(k): str(v) for k, v in conf.items()},
        python=raw.get("python"),
        spark_home=raw.get("spark_home"),
        warm_pool=_warm_pool(name, raw.get("warm_pool")),
        kubernetes=kubernetes,
    )


def _warm_pool(cluster: str, raw: Any) -> WarmPoolConfig:
    """`warm_pool: 2` or `warm_pool: {size, driver_memory, driver_cores, conf}`."""
    if raw is None:
        return WarmPoolConfig()
    if not isinstance(raw, Mapping):
        raw = {"size": raw}
    size = _optional_int(raw.get("size", 0), f"cluster {cluster!r}: warm_pool.size") or 0
    conf = raw.get("conf") or {}
    if not isinstance(conf, Mapping):
        raise ConfigError(f"cluster {cluster!r}: warm_pool.conf must be a mapping")
    try:
        memory = format_memory(parse_memory_mib(raw.get("driver_memory", "1g")))
    except ValueError as exc:
        raise ConfigError(f"cluster {cluster!r}: warm_pool.driver_memory: {exc}") from exc
    cores = _optional_int(
        raw.get("driver_cores", 1), f"cluster {cluster!r}: warm_pool.driver_cores"
    )
    return WarmPoolConfig(size, memory, cores or 1, {str(k): str(v) for k, v in conf.items()})


def _log_format(value: Any) -> str:
    if value not in ("text", "json"):
        raise ConfigError(f"log_format (CHIDORI_LOG_FORMAT) must be text or json, not {value!r}")
    return str(value)


def _switch(value: Any, what: str) -> bool:
    """An on/off setting: true/false, 1/0, on/off, yes/no (any case)."""
    text = str(value).strip().lower()
    if text in ("1", "true", "on", "yes"):
        return True
    if text in ("0", "false", "off", "no"):
        return False
    raise ConfigError(f"{what} must be on or off (1 or 0), not {value!r}")


def _shutdown_mode(value: Any) -> str:
    if value not in ("requeue", "wait"):
        raise ConfigError("shutdown.mode must be requeue or wait")
    return str(value)


def _optional_int(value: Any, what: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        number = int(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{what} must be a whole number, not {value!r}") from exc
    if number < 0:
        raise ConfigError(f"{what} must not be negative")
    return number


def _spark_rest(environ: Mapping[str, str], raw: Any, main_port: int) -> dict[str, Any]:
    """The `spark_rest:` section ({port, allowed_networks, run_as, jws_secret}) with the
    CHIDORI_SPARK_REST_* variables over it, checked here so a bad value stops the start."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError("spark_rest must be a mapping (port, allowed_networks, run_as, ...)")
    port = _optional_int(
        environ.get("CHIDORI_SPARK_REST_PORT") or raw.get("port"), "CHIDORI_SPARK_REST_PORT"
    )
    if port is not None and not 0 < port < 65536:
        raise ConfigError(f"CHIDORI_SPARK_REST_PORT must be a port number, not {port}")
    if port is not None and port == main_port:
        raise ConfigError("CHIDORI_SPARK_REST_PORT must differ from the server's own port")
    networks_raw: Any = environ.get("CHIDORI_SPARK_REST_ALLOWED_NETWORKS") or raw.get(
        "allowed_networks", SPARK_REST_DEFAULT_NETWORKS
    )
    if isinstance(networks_raw, str):
        networks_raw = [n for n in (part.strip() for part in networks_raw.split(",")) if n]
    if not isinstance(networks_raw, list | tuple):
        raise ConfigError("spark_rest.allowed_networks must be a list of CIDRs")
    networks = tuple(str(n).strip() for n in networks_raw)
    for network in networks:
        try:
            ipaddress.ip_network(network)
        except ValueError as exc:
            raise ConfigError(f"spark_rest.allowed_networks: {exc}") from exc
    user = environ.get("CHIDORI_SPARK_REST_USER") or raw.get("run_as")
    secret = environ.get("CHIDORI_SPARK_REST_JWS_SECRET") or raw.get("jws_secret")
    return {
        "spark_rest_port": port,
        "spark_rest_allowed_networks": networks,
        "spark_rest_user": str(user) if user else None,
        "spark_rest_jws_secret": str(secret) if secret else None,
    }


def _proxies(environ: Mapping[str, str], security: Mapping[str, Any]) -> dict[str, Any]:
    """The identity header of a reverse proxy in front and the proxies trusted to set it and
    X-Forwarded-For (CHIDORI_PROXY_USER_HEADER, CHIDORI_TRUSTED_PROXIES over the file). There
    is no default proxy: a header without trusted proxies stops the start."""
    header = environ.get("CHIDORI_PROXY_USER_HEADER") or security.get("proxy_user_header")
    raw: Any = environ.get("CHIDORI_TRUSTED_PROXIES") or security.get("trusted_proxies") or ()
    if isinstance(raw, str):
        raw = [part for part in (p.strip() for p in raw.split(",")) if part]
    if not isinstance(raw, list | tuple):
        raise ConfigError("security.trusted_proxies must be a list of CIDRs")
    trusted = tuple(str(n).strip() for n in raw)
    for network in trusted:
        try:
            ipaddress.ip_network(network)
        except ValueError as exc:
            raise ConfigError(f"security.trusted_proxies: {exc}") from exc
    if header and not trusted:
        raise ConfigError(
            "security.proxy_user_header needs security.trusted_proxies (or "
            "CHIDORI_TRUSTED_PROXIES): the addresses of the proxies allowed to set it"
        )
    return {"proxy_user_header": str(header) if header else None, "trusted_proxies": trusted}


def _isolation(environ: Mapping[str, str], raw: Any) -> IsolationConfig:
    if raw is None:
        raw = {}
    elif isinstance(raw, str):
        raw = {"mode": raw}
    elif not isinstance(raw, Mapping):
        raise ConfigError("isolation must be a mode (auto, sandbox, none) or a mapping")
    mode = str(environ.get("CHIDORI_ISOLATION") or raw.get("mode", "auto"))
    if mode not in ISOLATION_MODES:
        raise ConfigError(
            f"isolation mode must be one of {', '.join(ISOLATION_MODES)}, not {mode!r}"
        )
    network = str(raw.get("network", "host"))
    if network not in NETWORK_MODES:
        raise ConfigError(f"isolation.network must be host or none, not {network!r}")
    range_text = str(raw.get("uid_range", "40000-49999"))
    try:
        first, last = (int(part) for part in range_text.split("-", 1))
    except ValueError as exc:
        raise ConfigError(f"isolation.uid_range must be FIRST-LAST, not {range_text!r}") from exc
    if not 1000 <= first <= last < 2**31:
        raise ConfigError("isolation.uid_range must lie between 1000 and 2^31, first <= last")

    def paths(key: str) -> tuple[Path, ...]:
        value = raw.get(key) or []
        if not isinstance(value, list):
            raise ConfigError(f"isolation.{key} must be a list of paths")
        return tuple(Path(str(p)).resolve() for p in value)

    pass_env = raw.get("pass_env") or []
    if not isinstance(pass_env, list):
        raise ConfigError("isolation.pass_env must be a list of variable names")
    return IsolationConfig(
        mode=mode,
        uid_range=(first, last),
        lock_dir=Path(str(raw.get("lock_dir", "/run/chidori/identities"))),
        hide=paths("hide"),
        expose=paths("expose"),
        shared=paths("shared")
        + tuple(
            Path(p).resolve() for p in environ.get("CHIDORI_SHARED_DIRS", "").split(os.pathsep) if p
        ),
        network=network,
        pass_env=tuple(str(name) for name in pass_env),
    )


def _positive_float(value: Any, what: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{what} must be a number, not {value!r}") from exc
    if not 0 < number < float("inf"):
        raise ConfigError(f"{what} must be a positive number, not {value!r}")
    return number


def load_settings(
    environ: Mapping[str, str], config_file: Path | None = None, cwd: Path | None = None
) -> Settings:
    """Build the settings from the environment and the config file (the file loses to env)."""
    cwd = cwd or Path.cwd()
    file_name = config_file or (
        Path(environ["CHIDORI_CONFIG"]) if environ.get("CHIDORI_CONFIG") else None
    )
    data = _read_file(file_name) if file_name else {}
    server = data.get("server") or {}
    home = Path(environ.get("CHIDORI_HOME") or data.get("home") or cwd / ".chidori").resolve()
    database_url = (
        environ.get("CHIDORI_DATABASE_URL")
        or data.get("database_url")
        or f"sqlite:///{home / 'chidori.db'}"
    )
    clusters = {"local": ClusterConfig(name="local", type="local", master="local[*]")}
    raw_clusters = data.get("clusters") or {}
    if not isinstance(raw_clusters, Mapping):
        raise ConfigError("clusters must be a mapping of name to settings")
    for name, raw in raw_clusters.items():
        clusters[str(name)] = _cluster(str(name), raw or {})
    if environ.get("CHIDORI_WARM_POOL"):
        local = clusters["local"]
        size = _optional_int(environ["CHIDORI_WARM_POOL"], "CHIDORI_WARM_POOL") or 0
        clusters["local"] = replace(local, warm_pool=replace(local.warm_pool, size=size))
    roots_text = environ.get("CHIDORI_APP_ROOTS")
    if roots_text:
        roots = tuple(Path(p).resolve() for p in roots_text.split(os.pathsep) if p)
    else:
        roots = tuple(Path(p).resolve() for p in data.get("app_roots", [])) or (cwd.resolve(),)
    limits = data.get("limits") or {}
    security = data.get("security") or {}
    storage = data.get("storage") or {}
    if not isinstance(storage, Mapping):
        raise ConfigError("storage must be a mapping (url, retention_days)")
    port_text = environ.get("CHIDORI_PORT") or server.get("port") or 8080
    try:
        port = int(port_text)
    except ValueError as exc:
        raise ConfigError(f"CHIDORI_PORT must be a port number, not {port_text!r}") from exc
    event_log_dir = data.get("event_log_dir") or environ.get("CHIDORI_EVENT_LOG_DIR")
    return Settings(
        home=home,
        database_url=str(database_url),
        queue_url=environ.get("CHIDORI_QUEUE_URL") or str(data.get("queue_url") or "db"),
        host=environ.get("CHIDORI_HOST") or server.get("host") or "127.0.0.1",
        port=port,
        admin_token=environ.get("CHIDORI_ADMIN_TOKEN") or None,
        app_roots=roots,
        clusters=clusters,
        max_running_jobs=_optional_int(
            environ.get("CHIDORI_MAX_RUNNING_JOBS", limits.get("max_running_jobs", 4)),
            "max_running_jobs",
        ),
        cancel_grace_seconds=float(data.get("cancel_grace_seconds", 5.0)),
        lease_seconds=float(
            environ.get("CHIDORI_LEASE_SECONDS") or data.get("lease_seconds", 15.0)
        ),
        shutdown_mode=_shutdown_mode(data.get("shutdown", {}).get("mode", "requeue")),
        shutdown_grace_seconds=float(data.get("shutdown", {}).get("grace_seconds", 30.0)),
        event_log_dir=Path(event_log_dir).resolve() if event_log_dir else home / "spark-events",
        spark_progress=_switch(
            environ.get("CHIDORI_SPARK_PROGRESS") or data.get("spark_progress", True),
            "spark_progress (CHIDORI_SPARK_PROGRESS)",
        ),
        history_server_url=data.get("history_server_url")
        or environ.get("CHIDORI_HISTORY_SERVER_URL"),
        secret_key=environ.get("CHIDORI_SECRET_KEY") or None,
        submit_rate_per_second=float(security.get("submit_rate_per_second", 50.0)),
        submit_burst=int(security.get("submit_burst", 200)),
        max_request_bytes=int(security.get("max_request_bytes", 1024 * 1024)),
        **_proxies(environ, security),
        max_tokens_per_user=_optional_int(
            environ.get("CHIDORI_MAX_TOKENS_PER_USER") or security.get("max_tokens_per_user", 50),
            "CHIDORI_MAX_TOKENS_PER_USER",
        )
        or 0,
        auth_failures_per_minute=_optional_int(
            environ.get("CHIDORI_AUTH_FAILURES_PER_MINUTE")
            or security.get("auth_failures_per_minute", 30),
            "CHIDORI_AUTH_FAILURES_PER_MINUTE",
        )
        or 0,
        policy=dict(data.get("policy") or {}),
        environ=dict(environ),
        isolation=_isolation(environ, data.get("isolation")),
        config_file=file_name.resolve() if file_name else None,
        storage_url=str(environ.get("CHIDORI_STORAGE_URL") or storage.get("url") or ""),
        retention_days=_positive_float(
            environ.get("CHIDORI_RETENTION_DAYS") or storage.get("retention_days", 30),
            "CHIDORI_RETENTION_DAYS",
        ),
        log_format=_log_format(environ.get("CHIDORI_LOG_FORMAT") or data.get("log_format", "text")),
        **_spark_rest(environ, data.get("spark_rest"), port),
        environments=load_environments(environ, data.get("environments"), home),
        connect=_connect(environ, data.get("connect"), port),
    )


def _connect(environ: Mapping[str, str], raw: Any, main_port: int) -> ConnectConfig:
    try:
        return load_connect(environ, raw, main_port)
    except ConnectConfigError as exc:
        raise ConfigError(str(exc)) from exc
