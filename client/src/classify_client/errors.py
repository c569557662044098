"""Errors raised by the client: one class per gRPC status the server uses, so callers catch what they mean.

The server maps every failure to a status code in one place (see DESIGN.md); the client maps it back to an
exception type, keeping the server's detail text as the message because that text says what to fix.
"""

from __future__ import annotations

import grpc


class ClassifyError(Exception):
    """A call failed; ``code`` is the gRPC status and ``details`` the server's explanation."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details or code.name)
        self.code = code
        self.details = details

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code.name}: {self.details!r})"


class InvalidInputError(ClassifyError):
    """The server rejected the input (wrong shape, dtype, empty batch, text for an image model, ...)."""


class ModelNotFoundError(ClassifyError):
    """No such model, or no such version of it."""


class OverloadedError(ClassifyError):
    """The model's queue is full (RESOURCE_EXHAUSTED): retry later or send less at once."""


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


def error_for_status(code: grpc.StatusCode, details: str) -> ClassifyError:
    """The exception for a status: the specific subclass when there is one, else ClassifyError."""
    return _ERROR_TYPES.get(code, ClassifyError)(code, details)


def status_from_number(number: int) -> grpc.StatusCode:
    return _STATUS_BY_NUMBER.get(number, grpc.StatusCode.UNKNOWN)


def error_from_rpc(error: grpc.RpcError) -> ClassifyError:
    """Convert a grpc.RpcError (sync or asyncio) into the matching ClassifyError."""
    # Both grpc.Call (sync) and grpc.aio.AioRpcError expose code() and details().
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = error.details() if hasattr(error, "details") else str(error)
    return error_for_status(code or grpc.StatusCode.UNKNOWN, details or "")


def describe_for_target(error: ClassifyError, target: str) -> str:
    """One line for a person: what failed, against which server, and the server's own words."""
    code = error.code.name
    if error.code == grpc.StatusCode.UNAVAILABLE:
        return f"cannot reach server at {target} ({code}): {error.details}"
    if error.code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"server at {target} did not answer in time ({code}): {error.details}"
    return f"server at {target} refused the request ({code}): {error.details}"
