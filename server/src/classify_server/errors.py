"""Errors of the data plane and the one place where they become gRPC status codes.

The data plane raises these plain exceptions; servicers never build status codes themselves, they call
``status_of`` (streams) or wrap handlers in ``grpc_errors`` (unary calls).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from classify_server.request_ids import current_call

log = logging.getLogger(__name__)


class ClassifyServerError(Exception):
    """Base class: an error whose message a caller can act on, with the status it maps to."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL


class InvalidInputError(ClassifyServerError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class TooLargeError(InvalidInputError):
    """A request over a size or row limit: INVALID_ARGUMENT over gRPC, 413 over HTTP."""


class ModelNotFoundError(ClassifyServerError):
    code = grpc.StatusCode.NOT_FOUND


class OverloadedError(ClassifyServerError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class DeadlineExceededError(ClassifyServerError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class UnavailableError(ClassifyServerError):
    code = grpc.StatusCode.UNAVAILABLE


class FailedPreconditionError(ClassifyServerError):
    """Valid, but the server's state refuses it: a label naming an unloaded version, or a version
    exported without the explain signatures. Retrying the same request will not help."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class UnauthenticatedError(ClassifyServerError):
    code = grpc.StatusCode.UNAUTHENTICATED


class NotImplementedByServerError(ClassifyServerError):
    code = grpc.StatusCode.UNIMPLEMENTED


def code_of(exc: BaseException) -> grpc.StatusCode:
    """The status code an exception becomes, without logging it (for metrics)."""
    if isinstance(exc, ClassifyServerError):
        return exc.code
    if isinstance(exc, asyncio.CancelledError):
        return grpc.StatusCode.CANCELLED
    return grpc.StatusCode.INTERNAL


# Messages quote what the caller sent (a model name, a tensor name). gRPC carries the message in a
# trailer, and clients drop trailers over 16 KiB: a 100 kB model name would turn NOT_FOUND into the
# client's own RESOURCE_EXHAUSTED ("metadata size exceeds hard limit"), and over 8 KiB they may. 2,000
# UTF-8 bytes stay below that even when every byte is percent-encoded (3 bytes each on the wire).
MAX_MESSAGE_BYTES = 2000


# Overload answers come in floods: one log line each made a refused request cost more server CPU than
# a served one (measured: 667 vs 466 us a call), so the server got slower the harder it shed. Of these
# codes the first failure in each window is logged in full, with how many went unlogged before it; the
# metrics count every one.
THROTTLED_CODES = frozenset({grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.DEADLINE_EXCEEDED})
THROTTLE_SECONDS = 10.0


class LogThrottle:
    """Lets one failure of a code through per window; counts the rest."""

    def __init__(self, window: float = THROTTLE_SECONDS) -> None:
        self.window = window
        self._opened: dict[grpc.StatusCode, float] = {}
        self._unlogged: Counter[grpc.StatusCode] = Counter()

    def admit(self, code: grpc.StatusCode) -> int | None:
        """None: do not log this one. Otherwise log it, with the returned count of unlogged ones."""
        now = time.monotonic()
        opened = self._opened.get(code)
        if opened is not None and now - opened < self.window:
            self._unlogged[code] += 1
            return None
        self._opened[code] = now
        return self._unlogged.pop(code, 0)


_throttle = LogThrottle()


def status_of(exc: BaseException, model: str = "") -> tuple[grpc.StatusCode, str]:
    """The status code and message a caller sees for an exception raised while serving, logged once
    (overload codes: throttled, see THROTTLED_CODES).

    ``model`` is the model the request named, for the log line; the request id comes from the call.
    """
    if isinstance(exc, ClassifyServerError):
        code, message = exc.code, bounded(str(exc))
        if log.isEnabledFor(logging.WARNING):
            unlogged = _throttle.admit(code) if code in THROTTLED_CODES else 0
            if unlogged is not None:
                _log_failure(logging.WARNING, code, message, model, None, unlogged=unlogged)
        return code, message
    code = grpc.StatusCode.INTERNAL
    message = f"internal server error ({type(exc).__name__}); see the server log"
    _log_failure(logging.ERROR, code, f"unexpected {type(exc).__name__}: {exc}", model, exc)
    return code, message


def _log_failure(
    level: int,
    code: grpc.StatusCode,
    message: str,
    model: str,
    exc: BaseException | None,
    *,
    unlogged: int = 0,
) -> None:
    """One line per failed request: its id, status, model and method, and what was wrong."""
    request_id, method = current_call.get()
    more = (
        f" ({unlogged} more {code.name} failures since the last such line were not logged)"
        if unlogged
        else ""
    )
    log.log(
        level,
        "request %s failed: %s (model %s, %s): %s%s",
        request_id or "-",
        code.name,
        model or "-",
        method or "-",
        message,
        more,
        exc_info=exc,
        extra={
            "event": "request_failed",
            "request_id": request_id,
            "method": method,
            "code": code.name,
            "model": model,
            "unlogged_before": unlogged,
        },
    )


def bounded(message: str) -> str:
    encoded = message.encode("utf-8")
    if len(encoded) <= MAX_MESSAGE_BYTES:
        return message
    kept = encoded[: MAX_MESSAGE_BYTES - 40].decode("utf-8", errors="ignore")
    return f"{kept}... ({len(message) - len(kept)} more characters)"


Handler = TypeVar("Handler", bound=Callable[..., Awaitable[Any]])


def grpc_errors(handler: Handler) -> Handler:
    """Turn exceptions of a unary handler into a gRPC status via ``status_of``."""

    @functools.wraps(handler)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await handler(self, request, context)
        except Exception as exc:
            code, message = status_of(exc, model_of(request))
        # Setting the status and returning nothing sends the same answer as ``context.abort`` without
        # its exception, which took a quarter of the event loop's time when shedding under overload
        # (py-spy, 900 req/s offered to mnist-cnn).
        context.set_code(code)
        context.set_details(message)
        return None

    return wrapper  # type: ignore[return-value]


def model_of(request: Any) -> str:
    """The model a request of any protocol names (native, KServe V2, TF Serving), for log lines."""
    for field in ("model", "model_name", "name"):  # native, KServe V2 infer, KServe V2 metadata
        name = getattr(request, field, None)
        if isinstance(name, str) and name:
            return name
    spec = getattr(request, "model_spec", None)
    return str(getattr(spec, "name", "")) if spec is not None else ""
