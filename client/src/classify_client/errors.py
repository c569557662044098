"""Errors raised by the client: one class per gRPC status the server uses, so callers catch what they mean.

The server maps every failure to a status code in one place (``classify_server.errors``); the client
maps it back to an exception type, keeping the server's detail text as the message because that text
says what to fix.
"""

from __future__ import annotations

import grpc

# The metadata key of request ids: sent by callers who want their own (``headers={REQUEST_ID_HEADER: ...}``),
# returned by the server in every answer's trailing metadata, and written in its log line about a failure.
REQUEST_ID_HEADER = "x-request-id"


class ClassifyError(Exception):
    """A call failed; ``code`` is the gRPC status and ``details`` the server's explanation.

    ``request_id`` is the id the server logged the failure under (the caller's ``x-request-id`` or one it
    made up), or None when no server answered.
    """

    def __init__(self, code: grpc.StatusCode, details: str, request_id: str | None = None) -> None:
        super().__init__(details or code.name)
        self.code = code
        self.details = details
        self.request_id = request_id

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code.name}: {self.details!r})"


class InvalidInputError(ClassifyError):
    """The server rejected the input (wrong shape, dtype, empty batch, text for an image model, ...)."""


class ModelNotFoundError(ClassifyError):
    """No such model, or no such version of it."""


class OverloadedError(ClassifyError):
    """The server is at a limit of load (RESOURCE_EXHAUSTED): a model's queue is full or too many requests
    are in progress. Retry later, with backoff."""


class MessageTooLargeError(ClassifyError):
    """A request or an answer is larger than a maximum message size (RESOURCE_EXHAUSTED, the client's own
    ``max_message_bytes`` or the server's): retrying cannot help; send fewer rows per call."""


class DeadlineExceededError(ClassifyError):
    """The call did not finish within its timeout."""


class UnavailableError(ClassifyError):
    """The server cannot be reached, is still loading, or is shutting down."""


class UnauthenticatedError(ClassifyError):
    """The server wants credentials the call did not carry (see ``headers=``)."""


_ERROR_TYPES: dict[grpc.StatusCode, type[ClassifyError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidInputError,
    grpc.StatusCode.NOT_FOUND: ModelNotFoundError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: OverloadedError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
}

# Stream errors carry the numeric google.rpc.Code; grpc.StatusCode values are (number, name) pairs.
_STATUS_BY_NUMBER: dict[int, grpc.StatusCode] = {status.value[0]: status for status in grpc.StatusCode}


# gRPC's own wording when a message breaks a size limit, on either side: "Received message larger than
# max (N vs. M)" or "Sent message larger than max (N vs. M)".
_MESSAGE_SIZE_MARK = "message larger than max"


def error_for_status(code: grpc.StatusCode, details: str, request_id: str | None = None) -> ClassifyError:
    """The exception for a status: the specific subclass when there is one, else ClassifyError."""
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and _MESSAGE_SIZE_MARK in details:
        return MessageTooLargeError(code, details, request_id)
    return _ERROR_TYPES.get(code, ClassifyError)(code, details, request_id)


def status_from_number(number: int) -> grpc.StatusCode:
    return _STATUS_BY_NUMBER.get(number, grpc.StatusCode.UNKNOWN)


def error_from_rpc(error: grpc.RpcError) -> ClassifyError:
    """Convert a grpc.RpcError (sync or asyncio) into the matching ClassifyError."""
    # Both grpc.Call (sync) and grpc.aio.AioRpcError expose code() and details().
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = error.details() if hasattr(error, "details") else str(error)
    return error_for_status(code or grpc.StatusCode.UNKNOWN, details or "", request_id_of(error))


def request_id_of(error: grpc.RpcError) -> str | None:
    """The request id the server returned in the failed call's trailing metadata, if it answered at all."""
    trailing = error.trailing_metadata() if hasattr(error, "trailing_metadata") else None
    for key, value in trailing or ():
        if key == REQUEST_ID_HEADER:
            return value if isinstance(value, str) else value.decode("utf-8", "replace")
    return None


def describe_for_target(error: ClassifyError, target: str) -> str:
    """One line for a person: what failed, against which server, and the server's own words."""
    code = error.code.name
    if error.request_id:
        code += f", request id {error.request_id}"  # the key to the server's log line about it
    if error.code == grpc.StatusCode.UNAVAILABLE:
        return f"cannot reach server at {target} ({code}): {error.details}"
    if error.code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"server at {target} did not answer in time ({code}): {error.details}"
    return f"server at {target} refused the request ({code}): {error.details}"
