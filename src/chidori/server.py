"""The composition root: reads settings once and wires store, backends, scheduler and API."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import secrets
import shutil
import socket
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI

from chidori.api.app import HttpLimits, create_app
from chidori.api.deps import ProxyAuth
from chidori.api.spark_rest import SparkRestOptions, build_spark_rest_app, spark_version
from chidori.backends.base import HostedBackend
from chidori.backends.kubernetes.api import KubeApi
from chidori.backends.kubernetes.backend import KubernetesBackend
from chidori.backends.remote_factory import open_remote_backends
from chidori.backends.spark import SparkBackend
from chidori.config import ConfigError, Settings, load_settings
from chidori.config.environments import load_environments
from chidori.domain.errors import BackendError
from chidori.domain.limits import LimitsDoc
from chidori.domain.policy import PolicyDoc
from chidori.host.environments.parts import EnvironmentParts
from chidori.host.isolation import Isolation, driver_environment, runtime_paths
from chidori.host.kubernetes_watch import KubernetesWatch
from chidori.host.retention import Retention
from chidori.host.scheduler import Scheduler, SchedulerOptions
from chidori.host.session_relay import SessionRelay
from chidori.host.spark_progress import SparkProgressCollector
from chidori.observe.logs import configure_logging
from chidori.observe.metrics import Metrics
from chidori.observe.metrics_gauges import StoreGauges
from chidori.queues.dispatch import Dispatcher
from chidori.security.server_secrets import ensure_admin_token, ensure_secret_key
from chidori.security.signing import Signer
from chidori.services.admission import AdmissionService
from chidori.services.datasets import DatasetService
from chidori.services.environments import EnvironmentService
from chidori.services.identity import IdentityService
from chidori.services.jobs import JobService
from chidori.services.notify import ChangeNotifier
from chidori.services.ratelimit import FailureThrottle, RateLimiter
from chidori.services.sessions import SessionService
from chidori.services.shares import ShareService
from chidori.storage.artifacts import ArtifactStore
from chidori.storage.blobs import open_blobs
from chidori.storage.logship import EventLogSync, LogShipper
from chidori.store import Database, Repositories, open_database
from chidori.store.admission import AdmissionStore
from chidori.store.datasets import DatasetCatalog
from chidori.store.identity import IdentityStore
from chidori.store.metrics_reads import read_store_gauges
from chidori.store.sessions import SessionStore
from chidori.store.shared_secret import shared_signing_key
from chidori.store.shares import ShareStore
from chidori.store.spark_progress import ProgressRepository
from chidori.ui.routes import UiOptions
from chidori.ui.session import SessionManager

if TYPE_CHECKING:
    import uvicorn

log = logging.getLogger("chidori")


@dataclass
class Server:
    settings: Settings
    store: Database
    scheduler: Scheduler
    app: FastAPI
    admin_token_file: Path | None
    # Spark's REST submission listener (chidori.api.spark_rest); None when its port is unset.
    spark_rest_app: FastAPI | None = None


def build_server(settings: Settings) -> Server:
    settings.home.mkdir(parents=True, exist_ok=True)
    admin_token, token_file = ensure_admin_token(settings.admin_token, settings.home)
    store = open_database(settings.database_url)
    metrics = Metrics()
    store.on_unavailable(lambda operation: metrics.database_errors.labels(operation).inc())
    store.migrate()
    StoreGauges(lambda: read_store_gauges(store, settings.lease_seconds), metrics)
    remote_backends = open_remote_backends(settings.clusters, settings.environ)
    repos = Repositories.of(store, frozenset(remote_backends))
    try:
        blobs = open_blobs(settings.storage_url, store)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    if blobs is not None:
        log.info("shared storage: %s", blobs.describe())
    artifacts = ArtifactStore(
        settings.artifact_dir, settings.app_roots, settings.max_upload_bytes, blobs
    )
    # Replicas that share storage copy their drivers' logs there as they grow.
    log_shipper = LogShipper(blobs) if blobs is not None and blobs.shared else None
    # ... and their Spark event logs, for one History Server over all of them.
    event_logs = (
        EventLogSync(blobs, settings.event_log_dir, up=True)
        if log_shipper is not None and blobs is not None and settings.event_log_dir
        else None
    )
    retention = Retention(
        store, blobs, settings.artifact_dir, settings.log_dir, settings.retention_days
    )
    base_env = driver_environment(settings.environ, settings.isolation.pass_env)
    host = socket.gethostname()
    server_id = f"{host}-{os.getpid()}-{secrets.token_hex(3)}"
    backends = _backends(settings, base_env, server_id)
    environments = EnvironmentParts.build(
        settings.environments or load_environments({}, None, settings.home),
        store,
        settings.environ,
        server_id,
    )
    isolation = Isolation(
        settings.isolation,
        settings.home,
        # Jobs read their environments (read-only, like the rest of the runtime).
        runtime_paths([*_driver_runtime(backends, settings), str(environments.config.directory)]),
        settings.app_roots,
        settings.event_log_dir,
        settings.config_file,
    )
    isolation.start()
    log.info("isolation: %s", isolation.status)
    default_limits = LimitsDoc(max_running_jobs=settings.max_running_jobs)
    admission = AdmissionStore(store, default_limits)
    scheduler = Scheduler(
        repos,
        admission,
        backends,
        artifacts,
        SchedulerOptions(
            server_id=server_id,
            host=host,
            work_dir=settings.work_dir,
            heartbeat_file=settings.home / "run" / f"heartbeat-{server_id}",
            shutdown_mode=settings.shutdown_mode,
            shutdown_grace_seconds=settings.shutdown_grace_seconds,
            lease_seconds=settings.lease_seconds,
            lost_retry_limit=settings.lost_retry_limit,
            pause_before_spawn=float(settings.environ.get("CHIDORI_TEST_PAUSE_BEFORE_SPAWN") or 0),
        ),
        settings.log_dir,
        settings.cancel_grace_seconds,
        isolation,
        log_shipper,
        progress=_progress_collector(settings, store),
        metrics=metrics,
        remote_backends=remote_backends,
        environments=environments.jobs,
    )
    kubernetes_watch = KubernetesWatch(
        {n: b for n, b in backends.items() if isinstance(b, KubernetesBackend)},
        repos.jobs,
        repos.attempts,
        scheduler.drivers.running,
        scheduler.drivers.stop,
        server_id,
    )
    if kubernetes_watch.clusters:
        scheduler.watch_nodes(kubernetes_watch)
    notifier = ChangeNotifier()
    store.subscribe(notifier.notify)
    store.subscribe(scheduler.wake, scheduling_only=True)
    store.subscribe(environments.preparer.wake, scheduling_only=True)
    dispatcher = Dispatcher(
        store,
        repos.jobs,
        settings.queue_url,
        scheduler.wake,
        lambda kind: metrics.queue_errors.labels(kind).inc(),
    )
    try:
        default_policy = PolicyDoc.model_validate(dict(settings.policy))
    except ValueError as exc:
        raise ConfigError(f"policy in the config file is not valid: {exc}") from exc
    identity = IdentityService(
        IdentityStore(store),
        admin_token,
        default_policy,
        max_live_tokens=settings.max_tokens_per_user,
        failures=FailureThrottle(settings.auth_failures_per_minute, 60.0),
    )
    identity.bootstrap()
    admission_service = AdmissionService(admission, identity, settings.clusters)
    jobs = JobService(
        repos.jobs,
        repos.uploads,
        artifacts,
        settings.clusters,
        notifier,
        identity,
        admission_service,
        RateLimiter(settings.submit_rate_per_second, settings.submit_burst),
        admins_only=isolation.status if isolation.admin_only else None,
        blobs=blobs,
        cluster_checks={
            **{
                name: backend.check_spec
                for name, backend in backends.items()
                if isinstance(backend, KubernetesBackend)
            },
            **{name: backend.check_spec for name, backend in remote_backends.items()},
        },
        progress=ProgressRepository(store),
    )
    try:
        proxy_auth = ProxyAuth(
            settings.proxy_user_header,
            tuple(ipaddress.ip_network(net) for net in settings.trusted_proxies),
        )
    except ValueError as exc:
        raise ConfigError(f"security.trusted_proxies: {exc}") from exc
    if proxy_auth.trusts("127.0.0.1") or proxy_auth.trusts("::1"):
        log.warning(
            "security.trusted_proxies includes loopback: every local process, job drivers "
            "included, can set X-Forwarded-For%s",
            f" and {settings.proxy_user_header}" if settings.proxy_user_header else "",
        )

    # Replicas must sign alike: without a configured key, one kept in the shared database
    # (SQLite is one server: its key stays in its home).
    secret_key = settings.secret_key or (
        shared_signing_key(store) if store.dialect != "sqlite" else None
    )
    signer = Signer(ensure_secret_key(secret_key, settings.home))
    # Livy sessions: the relay carries statements to and from the session drivers run here.
    session_store = SessionStore(store)
    livy_sessions = SessionService(jobs, session_store, identity)
    session_relay = SessionRelay(
        session_store, lambda: scheduler.drivers.running("session"), settings.work_dir
    )
    # Spark Connect: the front door to each user's own Connect server (off without a port).
    connect_door = None
    if settings.connect.enabled:
        # grpcio comes with the `connect` extra: imported only when the door is on.
        from chidori.connect.door import ConnectDoor
        from chidori.connect.servers import ConnectServers, endpoint_reader

        connect_servers = ConnectServers(jobs, settings.connect, endpoint_reader(settings.work_dir))
        connect_door = ConnectDoor(identity, connect_servers, settings.connect)

    def readiness() -> str | None:
        store.ping()
        dispatcher.check()
        return isolation.status

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        notifier.bind(asyncio.get_running_loop())
        # SQLite cannot be shared by several servers: whatever is still active is ours.
        recovered = scheduler.recover_orphans(all_servers=store.dialect == "sqlite")
        if recovered:
            log.info("found %d attempt(s) orphaned by an earlier run; marked LOST", recovered)
        if log_shipper is not None:
            log_shipper.start()
        scheduler.start()
        environments.preparer.start(only_server=store.dialect == "sqlite")
        kubernetes_watch.start()  # its first pass sweeps what killed servers left
        dispatcher.start()
        session_relay.start()
        if connect_door is not None:
            connect_door.start()
        retention.start()
        if event_logs is not None:
            event_logs.start()
        try:
            yield
        finally:
            await asyncio.to_thread(retention.stop)
            if event_logs is not None:
                await asyncio.to_thread(event_logs.stop)
            await asyncio.to_thread(session_relay.stop)
            if connect_door is not None:
                await asyncio.to_thread(connect_door.stop)
            environments.preparer.close()
            await asyncio.to_thread(scheduler.stop)
            await asyncio.to_thread(kubernetes_watch.stop)
            if log_shipper is not None:
                await asyncio.to_thread(log_shipper.stop)
            await asyncio.to_thread(dispatcher.stop)
            store.dispose()

    environment_service = EnvironmentService(
        jobs, environments.repo, environments.pruner.prune, environments.bases.create
    )
    app = create_app(
        jobs,
        identity,
        admission_service,
        readiness,
        lifespan,
        proxy_auth,
        HttpLimits(settings.max_request_bytes, settings.max_upload_bytes),
        SessionManager(signer, identity),
        ShareService(ShareStore(store), signer, jobs, identity),
        UiOptions(
            history_server_url=settings.history_server_url,
            packages_of=environment_service.packages_of,
            spark_ui_clusters=frozenset(
                name for name, cluster in settings.clusters.items() if cluster.type == "livy"
            ),
        ),
        warm_rss=scheduler.warm.memory_bytes,
        livy_sessions=livy_sessions,
        metrics=metrics,
        datasets=DatasetService(jobs, DatasetCatalog(store)),
        environments=environment_service,
    )
    spark_rest_app = None
    if settings.spark_rest_port is not None:
        spark_rest_app = build_spark_rest_app(
            jobs,
            identity,
            readiness,
            SparkRestOptions.from_settings(settings, spark_version()),
        )
    return Server(settings, store, scheduler, app, token_file, spark_rest_app)


def _progress_collector(settings: Settings, store: Database) -> SparkProgressCollector | None:
    """What reads hosted drivers' event logs into their live progress (None when it is off)."""
    if not settings.spark_progress or settings.event_log_dir is None:
        return None
    return SparkProgressCollector(settings.event_log_dir, ProgressRepository(store).record)


def _backends(
    settings: Settings, base_env: dict[str, str], server_id: str
) -> dict[str, HostedBackend]:
    found: dict[str, HostedBackend] = {}
    for name, cluster in settings.clusters.items():
        if cluster.remote is not None:
            continue  # run at its service (chidori.backends.remote_factory)
        kube = cluster.kubernetes
        if kube is None:
            found[name] = SparkBackend(
                cluster, base_env, settings.event_log_dir, live_progress=settings.spark_progress
            )
            continue
        try:
            api = KubeApi(
                api_server=kube.api_server,
                kubeconfig=kube.kubeconfig,
                context=kube.context,
                namespace=kube.namespace,
                environ=settings.environ,
            )
        except BackendError as exc:
            raise ConfigError(f"cluster {name!r}: {exc}") from exc
        found[name] = KubernetesBackend(
            cluster,
            base_env,
            settings.event_log_dir,
            server_id=server_id,
            # The downward API names this pod: executors get an owner reference to it.
            pod_name=settings.environ.get("POD_NAME"),
            pod_ip=settings.environ.get("POD_IP"),
            api=api,
            live_progress=settings.spark_progress,
        )
    return found


def _driver_runtime(backends: Mapping[str, HostedBackend], settings: Settings) -> list[str]:
    """Folders drivers read beyond this Python: Spark and Java homes, configured Pythons."""
    found: list[str] = []
    for backend in backends.values():
        if isinstance(backend, SparkBackend):
            found += backend.runtime_paths()
    java = shutil.which("java", path=settings.environ.get("PATH"))
    if java:
        found.append(str(Path(os.path.realpath(java)).parent.parent))
    if settings.environ.get("JAVA_HOME"):
        found.append(settings.environ["JAVA_HOME"])
    return found


def run_server(config_file: Path | None, host: str | None = None, port: int | None = None) -> None:
    import uvicorn

    configure_logging("json" if os.environ.get("CHIDORI_LOG_FORMAT") == "json" else "text")
    settings = load_settings(os.environ, config_file)
    configure_logging(settings.log_format)  # the config file may choose it
    if host:
        settings = _replace(settings, host=host)
    if port:
        settings = _replace(settings, port=port)
    server = build_server(settings)
    where = (
        f"in {server.admin_token_file}" if server.admin_token_file else "from CHIDORI_ADMIN_TOKEN"
    )
    log.info(
        "Chidori on http://%s:%d (data in %s; admin token %s)",
        settings.host,
        settings.port,
        settings.home,
        where,
    )
    main = uvicorn.Server(
        uvicorn.Config(
            server.app,
            host=settings.host,
            port=settings.port,
            access_log=False,
            log_level="info",
            proxy_headers=False,  # X-Forwarded-* is applied by TrustedProxyHeaders, if at all
            log_config=_uvicorn_log_config(settings.log_format),
        )
    )
    if server.spark_rest_app is None or settings.spark_rest_port is None:
        main.run()
        return
    rest_config = uvicorn.Config(
        server.spark_rest_app,
        host=settings.host,
        port=settings.spark_rest_port,
        access_log=False,
        log_level="info",
        proxy_headers=False,
        lifespan="off",  # the main app's lifespan runs the scheduler, once
        log_config=_uvicorn_log_config(settings.log_format),
    )
    # Bound now, so a taken port stops the start before anything runs.
    rest_socket = rest_config.bind_socket()
    log.info("Spark REST submissions on spark://%s:%d", settings.host, settings.spark_rest_port)
    asyncio.run(_serve_both(main, _follower(rest_config), rest_socket))


def _uvicorn_log_config(log_format: str) -> dict[str, Any] | None:
    """uvicorn's own text logging, or none in JSON: its loggers then reach the root's handler."""
    if log_format == "json":
        return None
    from uvicorn.config import LOGGING_CONFIG

    return LOGGING_CONFIG


def _follower(config: uvicorn.Config) -> uvicorn.Server:
    """A uvicorn server that leaves signals to the main one, which stops it (two servers
    capturing signals would each take them from the other)."""
    import uvicorn

    class Follower(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return Follower(config)


async def _serve_both(main: uvicorn.Server, follower: uvicorn.Server, sock: socket.socket) -> None:
    """Serve the main app and, once it is up (its lifespan has started the scheduler), the
    follower on its bound socket; stop the follower as soon as the main server starts to stop,
    so no submission arrives while the scheduler shuts down."""
    main_task = asyncio.create_task(main.serve())
    while not main.started and not main_task.done():
        await asyncio.sleep(0.05)
    if main_task.done():
        await main_task  # its startup failed: re-raise that
        return
    follower_task = asyncio.create_task(follower.serve(sockets=[sock]))
    while not main.should_exit and not main_task.done():
        await asyncio.sleep(0.1)
    follower.should_exit = True
    await follower_task
    await main_task


def _replace(settings: Settings, **changes: object) -> Settings:
    from dataclasses import replace

    return replace(settings, **changes)  # type: ignore[arg-type]
