"""What every HTTP data request goes through, as gRPC calls go through the call guard and the token
interceptor: a request id, the bearer token, the server-wide concurrency limit, a bounded body read, and
the one error mapping (errors.py)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from fastapi import Request, Response
from pydantic import BaseModel, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from classify_server import request_ids, tracing
from classify_server.concurrency import ConcurrencyLimit
from classify_server.errors import InvalidInputError, OverloadedError, UnauthenticatedError
from classify_server.http.errors import BodyTimeoutError, BodyTooLargeError, error_response
from classify_server.request_ids import (
    MAX_REQUEST_ID_CHARS,
    current_call,
    current_priority,
    current_route_key,
    new_request_id,
)
from classify_server.security import token_problem
from classify_server.serving.data_plane import DataPlane

# ASGI gives header names as lowercase bytes: the gRPC side's names, encoded once.
REQUEST_ID_HEADER = request_ids.REQUEST_ID_HEADER.encode()
ROUTE_KEY_HEADER = request_ids.ROUTE_KEY_HEADER.encode()
PRIORITY_HEADER = request_ids.PRIORITY_HEADER.encode()
Model = TypeVar("Model", bound=BaseModel)


@dataclass
class HttpContext:
    """What the routes share: the data plane, the limits and the accepted tokens."""

    data_plane: DataPlane
    concurrency: ConcurrencyLimit
    tokens: frozenset[str]
    max_body_bytes: int
    body_timeout: float
    draining: bool = False  # set on SIGTERM: readiness answers false while accepted requests finish
    _token_bytes: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._token_bytes = [token.encode() for token in self.tokens]

    def authenticate(self, request: Request) -> None:
        if not self._token_bytes:
            return
        problem = token_problem(request.headers.get("authorization"), self._token_bytes, carrier="header")
        if problem is not None:
            raise UnauthenticatedError(problem)

    async def serve(
        self,
        request: Request,
        model: str,
        answer: Callable[[bytes], Awaitable[Response] | Response],
        *,
        read_body: bool = True,
    ) -> Response:
        """Authenticate, take a slot of the concurrency limit, read the body, answer; any failure becomes
        its error response. Probes do not come here: like gRPC health, they are never counted
        or refused."""
        try:
            self.authenticate(request)
            if not self.concurrency.try_enter():
                raise OverloadedError(self.concurrency.refusal())
            try:
                body = await self.read_body(request) if read_body else b""
                reply = answer(body)
                return await reply if inspect.isawaitable(reply) else reply
            finally:
                self.concurrency.leave()
        except Exception as exc:
            return error_response(exc, model)

    async def read_body(self, request: Request) -> bytes:
        """The whole body, refused as soon as it is known to be too big, and bounded in time."""
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            raise BodyTooLargeError(
                f"the request body is {int(declared)} bytes (Content-Length); this server accepts at most "
                f"{self.max_body_bytes} (--max-message-bytes): split the batch into smaller requests"
            )
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.body_timeout):
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > self.max_body_bytes:
                        raise BodyTooLargeError(
                            f"the request body is over {self.max_body_bytes} bytes (--max-message-bytes): "
                            "split the batch into smaller requests"
                        )
                    chunks.append(chunk)
        except TimeoutError:
            raise BodyTimeoutError(
                f"the request body did not arrive within {self.body_timeout:g} s "
                f"(--http-body-timeout-seconds; {size} bytes came)"
            ) from None
        body = b"".join(chunks)
        request._body = body  # Starlette's cache: request.form() parses these bytes
        return body


def parse_json(data: bytes, model: type[Model], what: str) -> Model:
    """``data`` as ``model``, or INVALID_ARGUMENT saying which field was wrong and what was expected."""
    if not data.strip():
        raise InvalidInputError(f"the request body is empty; send {what} as JSON")
    try:
        return model.model_validate_json(data)
    except ValidationError as exc:
        raise InvalidInputError(describe_validation(exc, what)) from None


def describe_validation(exc: ValidationError, what: str) -> str:
    errors = exc.errors(include_url=False)
    first = errors[0]
    if first["type"] == "json_invalid":
        return f"the request body is not valid JSON ({first['msg']}); send {what}"
    where = ".".join(str(part) for part in first["loc"]) or "the body"
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    got = repr(first.get("input"))
    got = got if len(got) <= 80 else got[:77] + "..."
    return f"{what}: field {where!r}: {first['msg']}, got {got}{more}"


class RequestIdMiddleware:
    """Adopts the caller's X-Request-Id (or makes one), sends it back, and names the call in log lines.

    Plain ASGI rather than Starlette's BaseHTTPMiddleware: one dictionary look-up per request and no
    extra task, and the context variable it sets is the one the route's handler runs under.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = route_key = priority = ""
        for key, value in scope["headers"]:
            if key == REQUEST_ID_HEADER:
                request_id = value.decode("latin-1")[:MAX_REQUEST_ID_CHARS]
            elif key == ROUTE_KEY_HEADER:
                route_key = value.decode("latin-1")[:MAX_REQUEST_ID_CHARS]
            elif key == PRIORITY_HEADER:
                priority = value.decode("latin-1")[:MAX_REQUEST_ID_CHARS]
        request_id = request_id or new_request_id()
        current_call.set((request_id, f"{scope['method']} {scope['path']}"))
        current_route_key.set(route_key)  # canary routing: serving/labels.py
        current_priority.set(priority)  # queue order: serving/scheduling.py
        if tracing.state.enabled:  # the caller's traceparent, for the request's spans
            tracing.adopt_headers(scope["headers"])
        header = (REQUEST_ID_HEADER, request_id.encode("latin-1"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        await self.app(scope, receive, send_with_id)
