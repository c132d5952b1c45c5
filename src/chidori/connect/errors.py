"""The door's one error table: each domain error class to the gRPC status it answers with.
The nearest class in an exception's MRO that the table lists wins (as for the HTTP tables)."""

from __future__ import annotations

import grpc

from chidori.config import ConfigError
from chidori.domain.errors import (
    BackendError,
    ChidoriError,
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    Unauthenticated,
    Unavailable,
    UnsupportedMediaType,
)

GRPC_STATUS: dict[type[ChidoriError], grpc.StatusCode] = {
    ChidoriError: grpc.StatusCode.INVALID_ARGUMENT,
    InvalidRequest: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    Conflict: grpc.StatusCode.ABORTED,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    Forbidden: grpc.StatusCode.PERMISSION_DENIED,
    PayloadTooLarge: grpc.StatusCode.RESOURCE_EXHAUSTED,
    UnsupportedMediaType: grpc.StatusCode.INVALID_ARGUMENT,
    RateLimited: grpc.StatusCode.RESOURCE_EXHAUSTED,
    # "Retry later": the stock client retries UNAVAILABLE, honouring the door's RetryInfo.
    Unavailable: grpc.StatusCode.UNAVAILABLE,
    # The cluster's backend cannot be used: retrying will not help until an admin acts.
    BackendError: grpc.StatusCode.FAILED_PRECONDITION,
    ConfigError: grpc.StatusCode.INTERNAL,
}


def grpc_status_for(exc: ChidoriError) -> grpc.StatusCode:
    for cls in type(exc).__mro__:
        if cls in GRPC_STATUS:
            return GRPC_STATUS[cls]
    return grpc.StatusCode.INTERNAL
