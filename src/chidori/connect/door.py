"""The Spark Connect front door: a gRPC server that forwards the 12 Spark Connect RPCs as raw
bytes (no protobuf model of its own) to the caller's own Connect server.

For every call it authenticates `authorization: Bearer <Chidori token>`, reads the session id
from the first request (field 1, `chidori.connect.wire`), asks `ConnectServers` where this
user's server is, swaps the user's token for that server's secret and forwards the call,
streams included, relaying the server's status and trailing metadata (Spark's error details).
While the server is starting, it holds the call up to `hold_seconds`; while it is queued, only
up to the retry delay (a queued server may wait for as long as a limit stays reached, and a
held call holds one of the door's threads). Then it answers UNAVAILABLE with a `RetryInfo` the
stock client honours.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc

from chidori.config.connect import ConnectConfig
from chidori.connect.errors import grpc_status_for
from chidori.connect.servers import ConnectServers, Route
from chidori.connect.wire import (
    ENDING,
    METHODS,
    SERVICE,
    STATUS_DETAILS_KEY,
    WireError,
    session_id_of,
    unavailable_status,
)
from chidori.domain.errors import ChidoriError, InvalidRequest, Unavailable
from chidori.services.identity import Actor, IdentityService

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 256 * 1024 * 1024  # above the client's 128 MiB, so the server decides
# The stock client pings every 60 s, even without calls: a grpcio server's default policy
# (5 minutes between pings without data) would answer that with GOAWAY "too_many_pings".
SERVER_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_ping_strikes", 0),
]
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
]
# Headers the door sets itself or gRPC owns; everything else the client sent goes through.
_NOT_FORWARDED = ("authorization", "user-agent")
_HOLD_POLL_SECONDS = 0.25


@dataclass(frozen=True)
class _Status(grpc.Status):  # type: ignore[misc]
    code: grpc.StatusCode
    details: str
    trailing_metadata: tuple[tuple[str, str | bytes], ...] = ()


class ConnectDoor:
    def __init__(
        self,
        identity: IdentityService,
        servers: ConnectServers,
        config: ConnectConfig,
        max_workers: int = 64,
    ) -> None:
        self._identity = identity
        self._servers = servers
        self._config = config
        self._max_workers = max_workers
        self._channels: dict[int, grpc.Channel] = {}
        # One callable per (server port, method), made once: not per call.
        self._stubs: dict[tuple[int, str], Any] = {}
        self._channels_lock = threading.Lock()
        self._server: grpc.Server | None = None
        self.port: int | None = None

    # ---- lifecycle ----------------------------------------------------------------------------

    def start(self) -> int:
        """Listen on the configured port (TLS when a certificate is set); the bound port."""
        server = grpc.server(
            ThreadPoolExecutor(max_workers=self._max_workers, thread_name_prefix="connect-door"),
            handlers=[self._handler()],
            options=SERVER_OPTIONS,
        )
        address = f"{self._config.host}:{self._config.port}"
        if self._config.tls_cert is not None and self._config.tls_key is not None:
            credentials = grpc.ssl_server_credentials(
                [(self._config.tls_key.read_bytes(), self._config.tls_cert.read_bytes())]
            )
            self.port = server.add_secure_port(address, credentials)
        else:
            self.port = server.add_insecure_port(address)
        server.start()
        self._server = server
        log.info("Spark Connect door listening on %s:%s", self._config.host, self.port)
        return self.port

    def stop(self, grace_seconds: float = 5.0) -> None:
        if self._server is not None:
            self._server.stop(grace_seconds).wait()
        with self._channels_lock:
            for channel in self._channels.values():
                channel.close()
            self._channels.clear()
            self._stubs.clear()

    def _handler(self) -> grpc.GenericRpcHandler:
        handlers = {}
        for name, (client_streams, server_streams) in METHODS.items():
            path = f"/{SERVICE}/{name}"
            if client_streams:
                handlers[name] = grpc.stream_unary_rpc_method_handler(self._stream_unary(path))
            elif server_streams:
                handlers[name] = grpc.unary_stream_rpc_method_handler(self._unary_stream(path))
            else:
                handlers[name] = grpc.unary_unary_rpc_method_handler(self._unary_unary(path))
        return grpc.method_handlers_generic_handler(SERVICE, handlers)

    # ---- the three shapes of call -------------------------------------------------------------

    def _unary_unary(self, path: str) -> Callable[[bytes, grpc.ServicerContext], bytes]:
        def call(request: bytes, context: grpc.ServicerContext) -> bytes:
            actor, route, metadata = self._open(context, request, path)
            try:
                stub = self._stub(route.port, path, "unary_unary")
                response: bytes = stub(request, metadata=metadata, timeout=_remaining(context))
            except grpc.RpcError as error:
                self._relay_error(context, actor, route, error)
            return response

        return call

    def _unary_stream(self, path: str) -> Callable[[bytes, grpc.ServicerContext], Iterator[bytes]]:
        def call(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
            actor, route, metadata = self._open(context, request, path)
            stub = self._stub(route.port, path, "unary_stream")
            responses = stub(request, metadata=metadata, timeout=_remaining(context))
            context.add_callback(responses.cancel)  # the client went away: so does the call
            try:
                yield from responses
            except grpc.RpcError as error:
                self._relay_error(context, actor, route, error)

        return call

    def _stream_unary(self, path: str) -> Callable[[Iterator[bytes], grpc.ServicerContext], bytes]:
        def call(requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
            first = next(requests, None)
            if first is None:
                _abort(context, _Status(grpc.StatusCode.INVALID_ARGUMENT, "no request sent"))
            actor, route, metadata = self._open(context, first, path)
            try:
                stub = self._stub(route.port, path, "stream_unary")
                response: bytes = stub(
                    itertools.chain([first], requests),
                    metadata=metadata,
                    timeout=_remaining(context),
                )
            except grpc.RpcError as error:
                self._relay_error(context, actor, route, error)
            return response

        return call

    # ---- what every call does -----------------------------------------------------------------

    def _open(
        self, context: grpc.ServicerContext, first: bytes, path: str
    ) -> tuple[Actor, Route, list[tuple[str, str | bytes]]]:
        """Who calls, where their server is, and the metadata to forward; aborts the call with
        the right status otherwise."""
        received = list(context.invocation_metadata())
        authorization = next(
            (str(value) for key, value in received if key == "authorization"), None
        )
        try:
            source = _peer_host(context.peer())
            actor = Actor(self._identity.authenticate(authorization, source), source)
            if session_id_of(first) is None:
                raise InvalidRequest("session_id: every Spark Connect request carries one")
            start = path.rsplit("/", 1)[-1] not in ENDING
            route = self._route_when_ready(actor, context, start)
        except WireError as exc:
            _abort(context, _Status(grpc.StatusCode.INVALID_ARGUMENT, f"session_id: {exc}"))
        except ChidoriError as exc:
            _abort(context, self._status_of(exc))
        metadata: list[tuple[str, str | bytes]] = [
            (key, value)
            for key, value in received
            if key not in _NOT_FORWARDED and not key.startswith("grpc-")
        ]
        metadata.append(("authorization", f"Bearer {route.secret}"))
        return actor, route, metadata

    def _route_when_ready(self, actor: Actor, context: grpc.ServicerContext, start: bool) -> Route:
        started = time.monotonic()
        while True:
            try:
                found = self._servers.route(actor, start)
            except Unavailable as exc:  # the store, say: worth holding the call as for a start
                waiting: Unavailable = exc
                hold = self._config.hold_seconds
            else:
                if isinstance(found, Route):
                    return found
                waiting = Unavailable(found.reason)
                hold = self._config.hold_seconds
                if found.queued:  # usually admitted within a step; if not, the client comes back
                    hold = min(hold, self._config.retry_delay_seconds)
            if time.monotonic() - started >= hold or not context.is_active():
                raise waiting
            time.sleep(_HOLD_POLL_SECONDS)

    def _status_of(self, exc: ChidoriError) -> _Status:
        code = grpc_status_for(exc)
        if code is grpc.StatusCode.UNAVAILABLE:
            details = unavailable_status(str(exc), self._config.retry_delay_seconds)
            return _Status(code, str(exc), ((STATUS_DETAILS_KEY, details),))
        return _Status(code, str(exc))

    def _relay_error(
        self, context: grpc.ServicerContext, actor: Actor, route: Route, error: grpc.RpcError
    ) -> NoReturn:
        call: Any = error  # a failed call is also a grpc.Call: its code, details, trailers
        code = call.code()
        if code is grpc.StatusCode.UNAVAILABLE:
            # The server stopped or cannot be reached: find it (or a new one) next time.
            self._servers.forget(actor, route)
            self._close_channel(route.port)
            exc = Unavailable(f"your Spark Connect server (job {route.job_id}) is unreachable")
            _abort(context, self._status_of(exc))
        trailing = tuple(call.trailing_metadata() or ())
        _abort(context, _Status(code, call.details() or "", trailing))

    def _stub(self, port: int, path: str, shape: str) -> Any:
        """The callable for one method on the one channel to a server (both reused)."""
        stub = self._stubs.get((port, path))
        if stub is not None:
            return stub
        with self._channels_lock:
            channel = self._channels.get(port)
            if channel is None:
                channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=CHANNEL_OPTIONS)
                self._channels[port] = channel
            stub = self._stubs[(port, path)] = getattr(channel, shape)(path)
            return stub

    def _close_channel(self, port: int) -> None:
        with self._channels_lock:
            channel = self._channels.pop(port, None)
            for key in [key for key in self._stubs if key[0] == port]:
                del self._stubs[key]
        if channel is not None:
            channel.close()


def _abort(context: grpc.ServicerContext, status: _Status) -> NoReturn:
    context.abort_with_status(status)
    raise AssertionError("abort_with_status returns only by raising")  # pragma: no cover


def _remaining(context: grpc.ServicerContext) -> float | None:
    remaining = context.time_remaining()
    return remaining if remaining is not None and remaining < 10**8 else None


def _peer_host(peer: str) -> str | None:
    """The client's address in a gRPC peer string (`ipv4:1.2.3.4:5`, `ipv6:[::1]:5`)."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rsplit(":", 1)[0]
    if kind == "ipv6":
        return rest.rsplit(":", 1)[0].strip("[]")
    return None
