"""The few bytes of the Spark Connect protocol the door reads or writes, without a protobuf
model: the session id of a request (field 1 of every Spark Connect request) and the
`google.rpc.Status` with a `RetryInfo` that tells a client how long to wait.

Protobuf wire format: each field is a varint key `(number << 3) | wire type`, then its value;
wire type 0 is a varint, 2 a length-delimited byte string, 1 and 5 fixed 64 and 32 bits.
"""

from __future__ import annotations

SERVICE = "spark.connect.SparkConnectService"
# The 12 RPCs and their shapes (spark/connect/base.proto): request stream?, response stream?
METHODS: dict[str, tuple[bool, bool]] = {
    "ExecutePlan": (False, True),
    "AnalyzePlan": (False, False),
    "Config": (False, False),
    "AddArtifacts": (True, False),
    "ArtifactStatus": (False, False),
    "Interrupt": (False, False),
    "ReattachExecute": (False, True),
    "ReleaseExecute": (False, False),
    "ReleaseSession": (False, False),
    "FetchErrorDetails": (False, False),
    "CloneSession": (False, False),
    "GetStatus": (False, False),
}
# Calls that end something: they never start a server for a user who has none running.
ENDING = frozenset({"Interrupt", "ReleaseExecute", "ReleaseSession"})
STATUS_DETAILS_KEY = "grpc-status-details-bin"
RETRY_INFO_TYPE = "type.googleapis.com/google.rpc.RetryInfo"
_UNAVAILABLE = 14
_MAX_SESSION_ID = 256


class WireError(ValueError):
    """Bytes that are not the protobuf message they should be."""


def _varint(data: bytes | memoryview, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(data) or shift > 63:
            raise WireError("truncated or overlong varint")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
        shift += 7


def session_id_of(message: bytes) -> str | None:
    """Field 1 (a string) of a request: its session id; None when the message has none.
    Reads fields in order until field 1, skipping the others by their wire type."""
    view = memoryview(message)
    at = 0
    while at < len(view):
        key, at = _varint(view, at)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            _, at = _varint(view, at)
        elif wire_type == 2:
            length, at = _varint(view, at)
            if at + length > len(view):
                raise WireError("a field runs past the end of the message")
            if number == 1:
                if length > _MAX_SESSION_ID:
                    raise WireError("the session id is too long")
                try:
                    return bytes(view[at : at + length]).decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise WireError("the session id is not UTF-8") from exc
            at += length
        elif wire_type == 1:
            at += 8
        elif wire_type == 5:
            at += 4
        else:
            raise WireError(f"unsupported wire type {wire_type}")
    return None


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _encode_varint(number << 3 | 2) + _encode_varint(len(payload)) + payload


def _varint_field(number: int, value: int) -> bytes:
    return _encode_varint(number << 3) + _encode_varint(value) if value else b""


def unavailable_status(message: str, retry_delay_seconds: float) -> bytes:
    """A serialized `google.rpc.Status` (UNAVAILABLE, the message) carrying a `RetryInfo`
    whose `retry_delay` is the given wait: what a client reads from `grpc-status-details-bin`."""
    seconds = int(retry_delay_seconds)
    nanos = round((retry_delay_seconds - seconds) * 1e9)
    duration = _varint_field(1, seconds) + _varint_field(2, nanos)
    retry_info = _field(1, duration)
    detail = _field(1, RETRY_INFO_TYPE.encode()) + _field(2, retry_info)
    return _varint_field(1, _UNAVAILABLE) + _field(2, message.encode()) + _field(3, detail)
