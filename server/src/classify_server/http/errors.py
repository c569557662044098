"""gRPC status codes → HTTP statuses, and the one JSON error body every HTTP API answers with.

The data plane's exceptions go through ``status_of`` exactly as over gRPC (same message, same log line);
only the status line differs. The body is ``{"error": message, "code": "INVALID_ARGUMENT"}``: ``error`` is
the key KServe V2 and TF Serving clients read, ``code`` names the gRPC status the same failure has there.
"""

from __future__ import annotations

import grpc
from fastapi.responses import JSONResponse

from classify_server.errors import (
    DeadlineExceededError,
    InvalidInputError,
    TooLargeError,
    UnauthenticatedError,
    status_of,
)

STATUS_BY_CODE = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.CANCELLED: 499,  # the caller went away; nobody reads it, but logs and metrics do
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}
# Overload and start-up answers tell the caller when trying again makes sense.
RETRY_AFTER_SECONDS = "1"
RETRY_STATUSES = frozenset({429, 503})
AUTH_CHALLENGE = 'Bearer realm="classify"'


class BodyTooLargeError(TooLargeError):
    """The body is over --max-message-bytes: RESOURCE_EXHAUSTED, as gRPC answers an over-size message."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    http_status = 413


class BodyTimeoutError(DeadlineExceededError):
    """The body did not arrive within --http-body-timeout-seconds."""

    http_status = 408


class UnsupportedMediaTypeError(InvalidInputError):
    http_status = 415


def http_status(exc: BaseException, code: grpc.StatusCode) -> int:
    explicit = getattr(exc, "http_status", None)
    if isinstance(explicit, int):
        return explicit
    if isinstance(exc, TooLargeError):
        return 413
    return STATUS_BY_CODE.get(code, 500)


def error_response(exc: BaseException, model: str = "") -> JSONResponse:
    """The answer to a failed request, logged once by ``status_of`` like a failed gRPC call."""
    code, message = status_of(exc, model)
    status = http_status(exc, code)
    headers: dict[str, str] = {}
    if status in RETRY_STATUSES:
        headers["Retry-After"] = RETRY_AFTER_SECONDS
    if isinstance(exc, UnauthenticatedError):
        invalid = message == "invalid token"
        headers["WWW-Authenticate"] = AUTH_CHALLENGE + (', error="invalid_token"' if invalid else "")
    if status in (408, 413):
        # The rest of the body may never come (or be 2 GB): close instead of reading it to keep the
        # connection alive.
        headers["Connection"] = "close"
    return JSONResponse({"error": message, "code": code.name}, status_code=status, headers=headers)
