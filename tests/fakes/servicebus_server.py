"""A small in-process Azure Service Bus for tests: a test double, not the service.

It speaks AMQP 1.0 over plain TCP on 127.0.0.1, the way the Service Bus emulator does for a
connection string with `UseDevelopmentEmulator=true` (the official `azure-servicebus` SDK then
connects with `amqp://` to the port of the `Endpoint`, without TLS). That is the SDK's transport
boundary: everything above it (its pure-Python AMQP stack `azure.servicebus._pyamqp`, links,
retries, lock tokens, settlement) is the real SDK.

Built from the OASIS AMQP 1.0 specification (part 2, transport: protocol headers, frames,
open/begin/attach/flow/transfer/disposition/detach/end/close; part 3, messaging: the message
sections and the accepted/rejected/released/modified outcomes; part 5, SASL) and the Service Bus
AMQP documentation ("AMQP 1.0 in Azure Service Bus: request-response operations", "AMQP claims-
based security": the `$cbs` put-token exchange with SAS tokens, `status-code` 202; peek-lock:
the delivery tag is the lock token, `x-opt-locked-until` / `x-opt-sequence-number` /
`x-opt-enqueued-time` message annotations; a message whose lock expires is delivered again;
after MaxDeliveryCount (10) deliveries it is moved to the dead-letter sub-queue).

Honesty note: frames and message sections are decoded and encoded with the SDK's own codec
(`_pyamqp._decode.decode_frame` / `decode_payload`, `_pyamqp._encode.encode_frame` /
`encode_payload`), for lack of time to write a second one; so a mismatch in the SDK's type
encoding would not be caught here. The protocol behaviour (handshake, credit, settlement, lock
expiry, what is answered when) is this module's own, from the documents above. SAS tokens
are verified (HMAC-SHA256 over the URL-encoded audience and expiry, as documented).

The same port also answers HTTPS (a connection whose first byte is a TLS handshake), for the one
management-plane call Chidori makes: `GET /QUEUE?api-version=2021-05` of the Service Bus REST
API ("Queues - Get"), answered with the documented ATOM entry holding a `QueueDescription` with
`CountDetails` (ActiveMessageCount, DeadLetterMessageCount), after checking the SAS token in the
Authorization header. The certificate is self-signed for 127.0.0.1 (`ca_file` is its path, for
REQUESTS_CA_BUNDLE); it needs the `cryptography` package, and without it `https` is False and
only AMQP is served.

What it models: queues created with `create_queue`; send (transfer, answered with a settled
`accepted` disposition); peek-lock receive driven by link credit (flow, including drain);
complete (accepted), abandon (modified), release (released) and dead-letter (rejected), each
answered with a settled disposition echoing the outcome, as rcv-settle-mode `second` requires;
`com.microsoft:message-lock-lost` for a lock that expired or is unknown; lock expiry after
`lock_duration` seconds (locks outlive the connection that took them, as in the service);
delivery counts and MaxDeliveryCount; `stop()` / `start()` on the same port with the state
kept, to model an outage.

What it does not model: the `$management` link (lock renewal, peek, deferral, scheduled
messages, settlement by lock token after the receiver link is gone: such an attach is refused
with `amqp:not-implemented`), sessions, topics and subscriptions, transactions, TTL and
expiry, duplicate detection, partitioning, message size limits beyond the advertised
max-message-size, multi-frame transfers to the client, the rest of the management (ATOM) API,
AMQP over TLS, websockets, and any timing of the real service. Messages are handed out first
in, first out.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import hmac
import itertools
import socket
import ssl
import struct
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote_plus, unquote, urlsplit
from xml.sax.saxutils import escape

from azure.servicebus._pyamqp import performatives as perf
from azure.servicebus._pyamqp._decode import decode_frame, decode_payload
from azure.servicebus._pyamqp._encode import encode_frame, encode_payload
from azure.servicebus._pyamqp.endpoints import Source, Target
from azure.servicebus._pyamqp.error import AMQPError
from azure.servicebus._pyamqp.message import Header, Properties
from azure.servicebus._pyamqp.message import Message as AmqpMessage
from azure.servicebus._pyamqp.outcomes import Accepted, Modified, Rejected, Released
from azure.servicebus._pyamqp.types import TYPE, VALUE, AMQPTypes

AMQP_HEADER = b"AMQP\x00\x01\x00\x00"
SASL_HEADER = b"AMQP\x03\x01\x00\x00"
SASL_FRAME = b"\x01"
AMQP_FRAME = b"\x00"
KEY_NAME = "RootManageSharedAccessKey"
MAX_DELIVERY_COUNT = 10
MAX_MESSAGE_SIZE = 256 * 1024
SENDER_CREDIT = 1000
LOCK_LOST = b"com.microsoft:message-lock-lost"
SEND_TIMEOUT = 5.0
TICK = 0.02  # how often locks are checked for expiry


@dataclass
class _Stored:
    sequence: int
    message: AmqpMessage  # as the sender sent it
    enqueued_ms: int
    lock_token: uuid.UUID | None = None
    locked_until: float = 0.0
    deliveries: int = 0


@dataclass
class _Queue:
    name: str
    messages: list[_Stored] = field(default_factory=list)
    dead_letters: list[tuple[_Stored, str | None]] = field(default_factory=list)


@dataclass
class _Link:
    name: str
    handle: int
    client_is_receiver: bool
    address: str  # the queue name, `$cbs`, ...
    delivery_count: int = 0
    credit: int = 0
    pending: list[AmqpMessage] = field(default_factory=list)  # $cbs answers waiting for credit


@dataclass
class _Session:
    channel: int
    links: dict[int, _Link] = field(default_factory=dict)
    next_outgoing_id: int = 0
    next_incoming_id: int = 0
    # delivery id -> (queue, lock token) of the peek-lock deliveries sent on this session
    locked: dict[int, tuple[str, uuid.UUID]] = field(default_factory=dict)
    partial: dict[int, tuple[int | None, bytearray]] = field(default_factory=dict)


class _ConnectionClosed(Exception):
    pass


class _Connection:
    def __init__(self, server: FakeServiceBus, sock: socket.socket) -> None:
        self.server = server
        self.sock = sock
        self.write_lock = threading.Lock()
        self.sessions: dict[int, _Session] = {}
        self.authorized: set[str] = set()  # audiences with a valid token
        self.closed = False

    # ---- wire ---------------------------------------------------------------------------

    def read_exact(self, size: int) -> bytes:
        data = bytearray()
        while len(data) < size:
            try:
                chunk = self.sock.recv(size - len(data))
            except TimeoutError:  # idle; the timeout is there to bound sends
                if self.closed:
                    raise _ConnectionClosed from None
                continue
            if not chunk:
                raise _ConnectionClosed
            data += chunk
        return bytes(data)

    def read_frame(self) -> tuple[int, int, list[Any] | None]:
        """(channel, performative code, fields); fields None for an empty (heartbeat) frame."""
        size = struct.unpack(">I", self.read_exact(4))[0]
        rest = self.read_exact(size - 4)
        doff, channel = rest[0], struct.unpack(">H", rest[2:4])[0]
        body = rest[doff * 4 - 4 :]
        if not body:
            return channel, -1, None
        code, fields = decode_frame(memoryview(body))
        return channel, code, fields

    def send(self, channel: int, frame: Any, frame_type: bytes = AMQP_FRAME) -> None:
        header, body = encode_frame(frame, frame_type=frame_type)
        data = header if body is None else header + struct.pack(">H", channel) + body
        with self.write_lock:
            if self.closed:
                return
            try:
                self.sock.sendall(data)
            except OSError:
                self.closed = True

    # ---- the conversation -----------------------------------------------------------------

    def serve(self) -> None:
        try:
            header = self.read_exact(8)
            if header == SASL_HEADER:
                self.sock.sendall(SASL_HEADER)
                self.send(
                    0,
                    perf.SASLMechanism(sasl_server_mechanisms=[b"MSSBCBS", b"ANONYMOUS"]),
                    SASL_FRAME,
                )
                _, code, _ = self.read_frame()
                if code != 0x41:  # sasl-init
                    return
                self.send(0, perf.SASLOutcome(code=0, additional_data=None), SASL_FRAME)
                header = self.read_exact(8)
            if header != AMQP_HEADER:
                self.sock.sendall(AMQP_HEADER)
                return
            self.sock.sendall(AMQP_HEADER)
            while not self.closed:
                channel, code, fields = self.read_frame()
                if fields is not None and not self.handle(channel, code, fields):
                    return
        except (_ConnectionClosed, OSError):
            return
        finally:
            self.server._forget(self)

    def handle(self, channel: int, code: int, f: list[Any]) -> bool:
        server = self.server
        if code == 0x10:  # open
            self.send(
                0,
                _make(
                    perf.OpenFrame,
                    container_id="chidori-fake-servicebus",
                    max_frame_size=65536,
                    channel_max=255,
                ),
            )
        elif code == 0x11:  # begin
            self.sessions[channel] = _Session(channel=channel)
            self.send(
                channel,
                _make(
                    perf.BeginFrame,
                    remote_channel=channel,
                    next_outgoing_id=0,
                    incoming_window=65536,
                    outgoing_window=65536,
                    handle_max=255,
                ),
            )
        elif code == 0x12:  # attach
            self.attach(channel, f)
        elif code == 0x13:  # flow
            handle = f[4]
            session = self.sessions[channel]
            if handle is not None and handle in session.links:
                link = session.links[handle]
                with server.lock:
                    if link.client_is_receiver:
                        link.credit = (
                            f[5] + f[6] - link.delivery_count if f[5] is not None else f[6]
                        )
                        self.flush_pending(session, link)
                        server._dispatch_locked()
                        if f[8]:  # drain: use up the credit, tell the client
                            link.delivery_count += link.credit
                            link.credit = 0
                            self.send(channel, self.flow(session, link, drain=True))
        elif code == 0x14:  # transfer
            self.transfer(channel, f)
        elif code == 0x15:  # disposition
            if f[0]:  # from the client as receiver: settling what we delivered
                self.disposition(channel, f)
        elif code == 0x16:  # detach
            session = self.sessions[channel]
            with server.lock:
                session.links.pop(f[0], None)
            self.send(channel, _make(perf.DetachFrame, handle=f[0], closed=True))
        elif code == 0x17:  # end
            with server.lock:
                self.sessions.pop(channel, None)
            self.send(channel, _make(perf.EndFrame))
        elif code == 0x18:  # close
            self.send(0, _make(perf.CloseFrame))
            return False
        return True

    def attach(self, channel: int, f: list[Any]) -> None:
        name, handle, client_role = f[0], f[1], bool(f[2])
        terminus = f[5] if client_role else f[6]  # the client's source (receiving) or target
        raw_address = terminus[0] if terminus else b""
        address = _entity(raw_address.decode() if isinstance(raw_address, bytes) else raw_address)
        session = self.sessions[channel]
        reply = _make(
            perf.AttachFrame,
            name=name,
            handle=handle,
            role=not client_role,
            send_settle_mode=f[3],
            rcv_settle_mode=f[4],
            source=_make(Source, address=f[5][0]) if f[5] else None,
            target=_make(Target, address=f[6][0]) if f[6] else None,
            initial_delivery_count=0 if client_role else None,
            max_message_size=MAX_MESSAGE_SIZE,
        )
        error: AMQPError | None = None
        with self.server.lock:
            known = address == "$cbs" or address in self.server._queues
            if address.endswith("$management"):
                error = AMQPError(
                    condition=b"amqp:not-implemented",
                    description=b"the fake has no $management node",
                    info=None,
                )
            elif not known:
                error = AMQPError(
                    condition=b"amqp:not-found",
                    description=f"no entity {address!r}".encode(),
                    info=None,
                )
            elif address != "$cbs" and not self.authorized_for(address):
                error = AMQPError(
                    condition=b"amqp:unauthorized-access",
                    description=b"no valid token for this entity",
                    info=None,
                )
            link = _Link(name=name, handle=handle, client_is_receiver=client_role, address=address)
            if error is None:
                session.links[handle] = link
        if error is not None:
            # AMQP 1.0 part 2.6.3: a refused link is attached with a null terminus on the
            # refusing side, then detached with the error.
            reply = reply._replace(**{"source" if client_role else "target": None})
        self.send(channel, reply)
        if error is not None:
            self.send(channel, _make(perf.DetachFrame, handle=handle, closed=True, error=error))
            return
        if not client_role:  # the client sends: give it credit
            link.delivery_count = f[9] or 0
            link.credit = SENDER_CREDIT
            self.send(channel, self.flow(session, link))

    def flow(self, session: _Session, link: _Link, drain: bool = False) -> Any:
        return _make(
            perf.FlowFrame,
            next_incoming_id=session.next_incoming_id,
            incoming_window=65536,
            next_outgoing_id=session.next_outgoing_id,
            outgoing_window=65536,
            handle=link.handle,
            delivery_count=link.delivery_count,
            link_credit=link.credit,
            drain=drain or None,
        )

    def transfer(self, channel: int, f: list[Any]) -> None:
        session = self.sessions[channel]
        handle, delivery_id, settled, more, payload = f[0], f[1], f[4], f[5], f[-1]
        if delivery_id is not None:
            session.next_incoming_id = delivery_id + 1
        first_id, buffer = session.partial.pop(handle, (delivery_id, bytearray()))
        buffer += bytes(payload)
        if more:
            session.partial[handle] = (first_id, buffer)
            return
        link = session.links.get(handle)
        if link is None:
            return
        message = decode_payload(memoryview(bytes(buffer)))
        link.delivery_count += 1
        link.credit -= 1
        state: Any = Accepted()
        if link.address == "$cbs":
            self.put_token(session, message)
        else:
            self.server._enqueue(link.address, message)
        if not settled and first_id is not None:
            self.send(
                channel,
                _make(perf.DispositionFrame, role=True, first=first_id, settled=True, state=state),
            )
        if link.credit < SENDER_CREDIT // 2:
            link.credit = SENDER_CREDIT
            self.send(channel, self.flow(session, link))

    def put_token(self, session: _Session, request: AmqpMessage) -> None:
        """The `$cbs` put-token operation: verify the SAS token, answer 202 or 401 on the
        client's `$cbs` receiving link, correlated by the request's message id."""
        props = request.application_properties or {}
        audience = _text(props.get(b"name"))
        token = _text(request.value)
        ok = props.get(b"operation") == b"put-token" and self.server._valid_token(token, audience)
        if ok:
            with self.server.lock:
                self.authorized.add(audience)
        answer = AmqpMessage(
            properties=_make(  # correlation-id may be any message-id type (a UUID here)
                Properties,
                correlation_id=request.properties.message_id if request.properties else None,
            ),
            application_properties={
                b"status-code": 202 if ok else 401,
                b"status-description": b"Accepted" if ok else b"InvalidSignature",
            },
        )
        with self.server.lock:
            for link in session.links.values():
                if link.address == "$cbs" and link.client_is_receiver:
                    link.pending.append(answer)
                    self.flush_pending(session, link)
                    break

    def authorized_for(self, queue: str) -> bool:
        return any(_entity(audience) in (queue, "") for audience in self.authorized)

    def flush_pending(self, session: _Session, link: _Link) -> None:
        while link.pending and link.credit > 0:
            self.deliver(
                session,
                link,
                link.pending.pop(0),
                tag=struct.pack(">I", link.delivery_count),
                settled=True,
            )

    def deliver(
        self, session: _Session, link: _Link, message: AmqpMessage, *, tag: bytes, settled: bool
    ) -> int:
        delivery_id = session.next_outgoing_id
        session.next_outgoing_id += 1
        link.delivery_count += 1
        link.credit -= 1
        payload = encode_payload(bytearray(), message)
        self.send(
            session.channel,
            _make(
                perf.TransferFrame,
                handle=link.handle,
                delivery_id=delivery_id,
                delivery_tag=tag,
                message_format=0,
                settled=settled,
                more=False,
                payload=bytes(payload),
            ),
        )
        return delivery_id

    def disposition(self, channel: int, f: list[Any]) -> None:
        session = self.sessions.get(channel)
        if session is None:
            return
        first, last, settled, state = f[1], f[2] if f[2] is not None else f[1], f[3], f[4]
        for delivery_id in range(first, last + 1):
            with self.server.lock:
                entry = session.locked.pop(delivery_id, None)
                applied = entry is not None and self.server._settle(entry[0], entry[1], state)
                self.server._dispatch_locked()
            if settled:
                continue  # the client does not wait for an answer
            if applied:
                outcome = _echo(state)
            else:
                outcome = Rejected(
                    error=AMQPError(
                        condition=LOCK_LOST,
                        description=b"The lock supplied is invalid: it expired or the message "
                        b"was already settled",
                        info=None,
                    )
                )
            self.send(
                channel,
                _make(
                    perf.DispositionFrame,
                    role=False,
                    first=delivery_id,
                    settled=True,
                    state=outcome,
                ),
            )

    def shut(self) -> None:
        with self.write_lock:
            self.closed = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


class FakeServiceBus:
    """Start with `start()`; `connection_string` is what the SDK takes. `stop()` and a later
    `start()` model an outage: queues, messages and locks survive, connections do not."""

    def __init__(self, *, lock_duration: float = 30.0, key: str | None = None) -> None:
        self.lock = threading.RLock()
        self._certificate_dir = tempfile.TemporaryDirectory(prefix="fake-servicebus-")
        self._tls = _tls_context(Path(self._certificate_dir.name))
        self.https = self._tls is not None
        self.ca_file = str(Path(self._certificate_dir.name) / "cert.pem")
        self.lock_duration = lock_duration
        self.key = key or base64.b64encode(uuid.uuid4().bytes).decode()
        self._queues: dict[str, _Queue] = {}
        self._sequence = itertools.count(1)
        self._connections: set[_Connection] = set()
        self._https: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self.port = 0

    # ---- lifecycle --------------------------------------------------------------------------

    @property
    def connection_string(self) -> str:
        return (
            f"Endpoint=sb://127.0.0.1:{self.port}/;SharedAccessKeyName={KEY_NAME};"
            f"SharedAccessKey={self.key};UseDevelopmentEmulator=true"
        )

    def start(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._stopping = threading.Event()
        self._threads = [
            threading.Thread(target=self._accept, args=(listener,), daemon=True),
            threading.Thread(target=self._tick, args=(self._stopping,), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stopping.set()
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):  # shutdown wakes the thread blocked in accept()
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self.lock:
            connections = list(self._connections)
            self._connections.clear()
            https, self._https = list(self._https), set()
        for connection in connections:
            connection.shut()
        for sock in https:  # kept-alive HTTPS connections end with the outage too
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(timeout=2)

    def close(self) -> None:
        """Stop for good and delete the certificate files."""
        self.stop()
        self._certificate_dir.cleanup()

    # ---- state, for tests -------------------------------------------------------------------

    def create_queue(self, name: str) -> None:
        with self.lock:
            self._queues.setdefault(name, _Queue(name))

    def send_raw(self, queue: str, body: bytes) -> None:
        """Enqueue a message with `body` as its one data section, as any sender could."""
        self._enqueue(queue, AmqpMessage(data=[body]))

    def active(self, queue: str) -> int:
        """Messages waiting and not locked (what ActiveMessageCount would say)."""
        with self.lock:
            now = time.monotonic()
            return sum(1 for m in self._queues[queue].messages if m.locked_until <= now)

    def stored(self, queue: str) -> int:
        """Messages in the queue, locked or not (dead letters excluded)."""
        with self.lock:
            return len(self._queues[queue].messages)

    def dead_letters(self, queue: str) -> list[tuple[bytes, str | None]]:
        """(body, dead-letter reason) of each message in the queue's dead-letter sub-queue."""
        with self.lock:
            return [
                (b"".join(_data(m.message)), reason)
                for m, reason in self._queues[queue].dead_letters
            ]

    # ---- internals --------------------------------------------------------------------------

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # Bounds a send to a client that stopped reading: the fake's lock is held meanwhile.
            sock.settimeout(SEND_TIMEOUT)
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        """AMQP, or HTTPS when the client opens with a TLS handshake (record type 22)."""
        try:
            first = sock.recv(1, socket.MSG_PEEK)
        except OSError:
            sock.close()
            return
        if first == b"\x16" and self._tls is not None:
            self._serve_https(sock, self._tls)
            return
        connection = _Connection(self, sock)
        with self.lock:
            if self._stopping.is_set():
                sock.close()
                return
            self._connections.add(connection)
        connection.serve()

    def _serve_https(self, raw: socket.socket, context: ssl.SSLContext) -> None:
        try:
            sock = context.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            raw.close()
            return
        with self.lock:
            if self._stopping.is_set():
                sock.close()
                return
            self._https.add(sock)
        with sock:
            reader = sock.makefile("rb")
            try:
                while not self._stopping.is_set():
                    request_line = reader.readline(65536)
                    if not request_line:
                        return
                    headers: dict[str, str] = {}
                    while (line := reader.readline(65536)) not in (b"\r\n", b"\n", b""):
                        name, _, value = line.decode("latin-1").partition(":")
                        headers[name.strip().lower()] = value.strip()
                    reader.read(int(headers.get("content-length", "0") or 0))
                    method, target = request_line.decode("latin-1").split(" ")[:2]
                    status, body = self._management(method, target, headers)
                    sock.sendall(
                        f"HTTP/1.1 {status}\r\nContent-Type: application/atom+xml;"
                        f"type=entry;charset=utf-8\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                        + body
                    )
            except (OSError, ValueError):
                return
            finally:
                with self.lock:
                    self._https.discard(sock)

    def _management(self, method: str, target: str, headers: dict[str, str]) -> tuple[str, bytes]:
        """The Service Bus REST API's "Queues - Get", the only management call modelled."""
        parts = urlsplit(target)
        name = unquote(parts.path.strip("/"))
        audience = f"https://127.0.0.1:{self.port}/"
        if not self._valid_token(headers.get("authorization", ""), audience):
            return "401 Unauthorized", _error_xml(401, "InvalidSignature")
        with self.lock:
            entry = self._queues.get(name)
            if method != "GET" or entry is None or "/" in name:
                # The service answers an unknown entity with an empty feed; the SDK maps a
                # missing entry content to ResourceNotFoundError.
                return "200 OK", _EMPTY_FEED.encode()
            now = time.monotonic()
            active = sum(1 for m in entry.messages if m.lock_token is None or m.locked_until <= now)
            total, dead = len(entry.messages), len(entry.dead_letters)
        return "200 OK", _queue_entry(
            name, self.port, self.lock_duration, total + dead, active, dead
        ).encode()

    def _forget(self, connection: _Connection) -> None:
        with self.lock:
            self._connections.discard(connection)
        connection.shut()

    def _tick(self, stopping: threading.Event) -> None:
        while not stopping.wait(TICK):
            with self.lock:
                self._dispatch_locked()

    def _enqueue(self, queue: str, message: AmqpMessage) -> None:
        with self.lock:
            self._queues[queue].messages.append(
                _Stored(next(self._sequence), message, int(time.time() * 1000))
            )
            self._dispatch_locked()

    def _settle(self, queue: str, token: uuid.UUID, state: Any) -> bool:
        """Apply a receiver's outcome to the message locked with `token`; False if that lock
        is gone (expired, or the message was settled or redelivered)."""
        entry = self._queues.get(queue)
        stored = next((m for m in entry.messages if m.lock_token == token), None) if entry else None
        if entry is None or stored is None or stored.locked_until <= time.monotonic():
            return False
        outcome = next(iter(state), None) if isinstance(state, dict) else None
        if outcome == "modified" and state["modified"] and state["modified"][1]:
            return False  # undeliverable-here is deferral, which the fake does not model
        stored.lock_token, stored.locked_until = None, 0.0
        if outcome == "accepted":
            entry.messages.remove(stored)
        elif outcome == "rejected":
            entry.messages.remove(stored)
            error = state["rejected"][0] if state["rejected"] else None
            info = (error[2] if error and len(error) > 2 else None) or {}
            reason = info.get(b"DeadLetterReason")
            entry.dead_letters.append((stored, _text(reason) if reason is not None else None))
        # released / modified: unlocked, visible again
        return True

    def _dispatch_locked(self) -> None:
        """Expire locks, then hand visible messages to receiving links with credit."""
        now = time.monotonic()
        for entry in self._queues.values():
            for stored in list(entry.messages):
                if stored.lock_token is not None and stored.locked_until <= now:
                    stored.lock_token = None
                    if stored.deliveries >= MAX_DELIVERY_COUNT:
                        entry.messages.remove(stored)
                        entry.dead_letters.append((stored, "MaxDeliveryCountExceeded"))
        for connection in list(self._connections):
            for session in list(connection.sessions.values()):
                for link in list(session.links.values()):
                    if not link.client_is_receiver or link.address not in self._queues:
                        continue
                    for stored in self._visible(link.address, now):
                        if link.credit <= 0 or connection.closed:
                            break
                        self._lock_and_send(connection, session, link, stored, now)

    def _visible(self, queue: str, now: float) -> Iterator[_Stored]:
        for stored in list(self._queues[queue].messages):
            if stored.lock_token is None:
                yield stored

    def _lock_and_send(
        self, connection: _Connection, session: _Session, link: _Link, stored: _Stored, now: float
    ) -> None:
        token = uuid.uuid4()
        stored.lock_token = token
        stored.locked_until = now + self.lock_duration
        locked_until_ms = int((time.time() + self.lock_duration) * 1000)
        message = stored.message._replace(
            header=Header(delivery_count=stored.deliveries),
            message_annotations={
                **(stored.message.message_annotations or {}),
                b"x-opt-locked-until": {TYPE: AMQPTypes.timestamp, VALUE: locked_until_ms},
                b"x-opt-sequence-number": {TYPE: AMQPTypes.long, VALUE: stored.sequence},
                b"x-opt-enqueued-time": {TYPE: AMQPTypes.timestamp, VALUE: stored.enqueued_ms},
            },
        )
        stored.deliveries += 1
        delivery_id = connection.deliver(session, link, message, tag=token.bytes_le, settled=False)
        session.locked[delivery_id] = (link.address, token)

    def _valid_token(self, token: str, audience: str) -> bool:
        """A Service Bus SAS token: `SharedAccessSignature sr=..&sig=..&se=..&skn=..`, signed
        with this namespace's key, not expired."""
        if not token.startswith("SharedAccessSignature "):
            return False
        fields = dict(parse_qsl(token[len("SharedAccessSignature ") :]))
        try:
            expiry = int(fields["se"])
            resource, signature, key_name = fields["sr"], fields["sig"], fields["skn"]
        except (KeyError, ValueError):
            return False
        expected = base64.b64encode(
            hmac.new(
                self.key.encode(), f"{quote_plus(resource)}\n{expiry}".encode(), hashlib.sha256
            ).digest()
        ).decode()
        return (
            key_name == KEY_NAME
            and hmac.compare_digest(expected, signature)
            and expiry > time.time()
            and _entity(audience) in ("", _entity(resource))
        )


def _make(cls: Any, **values: Any) -> Any:
    """A performative with the given fields and None (absent) for the others."""
    return cls(**{name: values.get(name) for name in cls._fields})


def _entity(address: str) -> str:
    """The entity an AMQP address names: `amqps://host/queue` -> `queue`, `$cbs` -> `$cbs`."""
    if "://" in address:
        address = urlsplit(address).path
    return address.strip("/")


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode()
    return "" if value is None else str(value)


def _data(message: AmqpMessage) -> list[bytes]:
    data = message.data
    if data is None:
        return []
    if isinstance(data, bytes):
        return [data]
    return [bytes(item) for item in data]


def _echo(state: Any) -> Any:
    """The outcome the client asked for, echoed back as the service does."""
    outcome = next(iter(state), None) if isinstance(state, dict) else None
    if outcome == "rejected":
        return Rejected(error=None)
    if outcome == "modified":
        values = list(state["modified"] or [])
        values += [None] * (3 - len(values))
        return Modified(
            delivery_failed=values[0], undeliverable_here=values[1], message_annotations=None
        )
    if outcome == "released":
        return Released()
    return Accepted()


_EMPTY_FEED = (
    '<feed xmlns="http://www.w3.org/2005/Atom"><title type="text">Publicly Listed Services'
    "</title><id>uuid:00000000-0000-0000-0000-000000000000</id>"
    "<updated>2026-01-01T00:00:00Z</updated></feed>"
)


def _queue_entry(
    name: str, port: int, lock_duration: float, total: int, active: int, dead: int
) -> str:
    """The ATOM entry of "Queues - Get", with the fields the SDK reads for runtime properties."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    lock = f"PT{max(int(lock_duration), 1)}S"
    queue = escape(name)
    return (
        '<entry xmlns="http://www.w3.org/2005/Atom">'
        f"<id>https://127.0.0.1:{port}/{queue}?api-version=2021-05</id>"
        f'<title type="text">{queue}</title><published>{now}</published><updated>{now}</updated>'
        "<author><name>fake</name></author>"
        f'<link rel="self" href="https://127.0.0.1:{port}/{queue}?api-version=2021-05"/>'
        '<content type="application/xml">'
        '<QueueDescription xmlns="http://schemas.microsoft.com/netservices/2010/10/servicebus/'
        'connect" xmlns:i="http://www.w3.org/2001/XMLSchema-instance">'
        f"<LockDuration>{lock}</LockDuration><MaxSizeInMegabytes>1024</MaxSizeInMegabytes>"
        "<RequiresDuplicateDetection>false</RequiresDuplicateDetection>"
        "<RequiresSession>false</RequiresSession>"
        f"<MaxDeliveryCount>{MAX_DELIVERY_COUNT}</MaxDeliveryCount>"
        f"<SizeInBytes>0</SizeInBytes><MessageCount>{total}</MessageCount>"
        f"<Status>Active</Status><CreatedAt>{now}</CreatedAt><UpdatedAt>{now}</UpdatedAt>"
        f"<AccessedAt>{now}</AccessedAt>"
        '<CountDetails xmlns:d2p1="http://schemas.microsoft.com/netservices/2011/06/servicebus">'
        f"<d2p1:ActiveMessageCount>{active}</d2p1:ActiveMessageCount>"
        f"<d2p1:DeadLetterMessageCount>{dead}</d2p1:DeadLetterMessageCount>"
        "<d2p1:ScheduledMessageCount>0</d2p1:ScheduledMessageCount>"
        "<d2p1:TransferMessageCount>0</d2p1:TransferMessageCount>"
        "<d2p1:TransferDeadLetterMessageCount>0</d2p1:TransferDeadLetterMessageCount>"
        "</CountDetails></QueueDescription></content></entry>"
    )


def _error_xml(code: int, detail: str) -> bytes:
    return f"<Error><Code>{code}</Code><Detail>{escape(detail)}</Detail></Error>".encode()


def _tls_context(directory: Path) -> ssl.SSLContext | None:
    """A server context with a fresh self-signed certificate for 127.0.0.1, or None without
    the `cryptography` package."""
    try:
        import ipaddress

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        return None
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context
