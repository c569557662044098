"""What every data-plane RPC goes through before its servicer: request id and the concurrency limit.

Handlers are wrapped once, when the servicers are registered, not per call as a grpc.aio server
interceptor would do (an interceptor builds a new handler for every call). So the per-call cost is one
extra coroutine frame, a scan of the call's metadata and a counter. Health checks and reflection are
registered on the server directly and never pass through here: they are neither counted nor refused.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import grpc

from classify_server import tracing
from classify_server.concurrency import ConcurrencyLimit
from classify_server.errors import InvalidInputError, OverloadedError, model_of, status_of
from classify_server.request_ids import (
    REQUEST_ID_HEADER,
    call_headers_of,
    current_call,
    current_priority,
    current_route_key,
)

# Probes of the KServe protocol: like grpc.health.v1, never refused for being busy.
UNCOUNTED_METHODS = frozenset(
    f"/inference.GRPCInferenceService/{name}" for name in ("ServerLive", "ServerReady", "ModelReady")
)


class CallGuard:
    """Wraps method handlers so each call gets a request id and counts against the concurrency limit."""

    def __init__(self, limit: ConcurrencyLimit) -> None:
        self.limit = limit

    def wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        counted = method not in UNCOUNTED_METHODS
        behaviour, factory = _behaviour_and_factory(handler)
        if handler.request_streaming:
            behaviour = _parsed_requests_only(behaviour)
        if inspect.isasyncgenfunction(behaviour):
            guarded: Callable[..., Any] = self._streaming(method, behaviour, counted)
        else:
            guarded = self._unary(method, behaviour, counted)
        return factory(
            guarded,
            request_deserializer=_tolerant(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )

    def _unary(self, method: str, behaviour: Callable[..., Any], counted: bool) -> Callable[..., Any]:
        limit = self.limit

        async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
            _enter(method, context)
            if isinstance(request, Unparseable):
                await _refuse_unparseable(context, request)
            if not counted:
                return await behaviour(request, context)
            if not limit.try_enter():
                return _refuse(context, limit, model_of(request))
            try:
                return await behaviour(request, context)
            finally:
                limit.leave()

        return guarded

    def _streaming(self, method: str, behaviour: Callable[..., Any], counted: bool) -> Callable[..., Any]:
        limit = self.limit

        async def guarded(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            _enter(method, context)
            if isinstance(request, Unparseable):  # a unary request to a server-streaming method
                await _refuse_unparseable(context, request)
            if counted and not limit.try_enter():
                _refuse(context, limit)
                return
            try:
                async for reply in behaviour(request, context):
                    yield reply
            except InvalidInputError as exc:  # an unparseable message in the request stream
                code, message = status_of(exc)
                await context.abort(code, message)
            finally:
                if counted:
                    limit.leave()

        return guarded


class ParseGuard:
    """Wraps the handlers of services registered as gRPC ships them (health): a request whose bytes do
    not parse gets INVALID_ARGUMENT saying so, on every front (grpc.aio answers UNKNOWN, pygrpc-native
    INTERNAL). Nothing else: these calls are neither counted nor given request ids."""

    def wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        behaviour, factory = _behaviour_and_factory(handler)
        if handler.request_streaming:
            return handler
        if inspect.isasyncgenfunction(behaviour):

            async def streaming(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                if isinstance(request, Unparseable):
                    await _refuse_unparseable(context, request)
                async for reply in behaviour(request, context):
                    yield reply

            parsed: Callable[..., Any] = streaming
        else:

            async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                if isinstance(request, Unparseable):
                    await _refuse_unparseable(context, request)
                return await behaviour(request, context)

            parsed = unary
        return factory(
            parsed,
            request_deserializer=_tolerant(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )


class Unparseable:
    """Stands in for a request whose bytes are not a valid message of the method's request type."""

    __slots__ = ("error", "message_type")

    def __init__(self, message_type: str, error: str) -> None:
        self.message_type = message_type
        self.error = error


def _tolerant(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """A deserializer that hands bad bytes to the handler as ``Unparseable`` instead of raising.

    gRPC answers a raising deserializer with UNKNOWN ("Unexpected DecodeError") before any handler
    runs; the caller sent a malformed request, which is INVALID_ARGUMENT with a message saying so.
    """
    if deserialize is None:
        return None
    message_type = getattr(getattr(deserialize, "__self__", None), "DESCRIPTOR", None)
    type_name = message_type.full_name if message_type is not None else "request message"

    def tolerant(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception as exc:  # protobuf raises DecodeError, or others on deeply broken input
            return Unparseable(type_name, f"{type(exc).__name__}: {exc}")

    return tolerant


def _parsed_requests_only(behaviour: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a stream-request handler so an unparseable message ends the call with INVALID_ARGUMENT."""

    async def checked(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
        async for request in requests:
            if isinstance(request, Unparseable):
                raise _unparseable_error(request)
            yield request

    if inspect.isasyncgenfunction(behaviour):

        async def streaming(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> Any:
            async for reply in behaviour(checked(requests), context):
                yield reply

        return streaming

    async def unary(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> Any:
        return await behaviour(checked(requests), context)

    return unary


def _unparseable_error(request: Unparseable) -> InvalidInputError:
    return InvalidInputError(
        f"the request is not a valid {request.message_type} ({request.error}); "
        "send a message serialized from the service's .proto definition"
    )


async def _refuse_unparseable(context: grpc.aio.ServicerContext, request: Unparseable) -> None:
    code, message = status_of(_unparseable_error(request))
    await context.abort(code, message)


def _enter(method: str, context: grpc.aio.ServicerContext) -> None:
    """Adopt or make the call's request id, hand it back in the trailing metadata, remember it for logs."""
    request_id, route_key, priority = call_headers_of(context)
    context.set_trailing_metadata(((REQUEST_ID_HEADER, request_id),))
    current_call.set((request_id, method))
    current_route_key.set(route_key)  # canary routing: serving/labels.py
    current_priority.set(priority)  # queue order: serving/scheduling.py
    if tracing.state.enabled:  # the caller's traceparent, for every request of this call
        tracing.adopt_metadata(context.invocation_metadata())


def _refuse(context: grpc.aio.ServicerContext, limit: ConcurrencyLimit, model: str = "") -> None:
    """Answer RESOURCE_EXHAUSTED by setting the status and returning (gRPC then sends no message):
    cheaper than ``abort``'s exception, and a refusal must cost less than serving."""
    code, message = status_of(OverloadedError(limit.refusal()), model)  # logged like any failure
    context.set_code(code)
    context.set_details(message)


def _behaviour_and_factory(handler: grpc.RpcMethodHandler) -> tuple[Callable[..., Any], Callable[..., Any]]:
    if handler.request_streaming and handler.response_streaming:
        return handler.stream_stream, grpc.stream_stream_rpc_method_handler
    if handler.request_streaming:
        return handler.stream_unary, grpc.stream_unary_rpc_method_handler
    if handler.response_streaming:
        return handler.unary_stream, grpc.unary_stream_rpc_method_handler
    return handler.unary_unary, grpc.unary_unary_rpc_method_handler


class GuardedRegistration:
    """Stands in for the server while a generated ``add_*Servicer_to_server`` registers its handlers.

    The generated functions register one dictionary of method handlers twice, as a generic handler and
    as pre-registered methods; both paths get the same wrapped handlers.
    """

    def __init__(self, server: grpc.aio.Server, guard: CallGuard | ParseGuard) -> None:
        self._server = server
        self._guard = guard

    def add_registered_method_handlers(
        self, service: str, handlers: Mapping[str, grpc.RpcMethodHandler]
    ) -> None:
        wrapped = self._wrap_all(service, handlers)
        self._server.add_registered_method_handlers(service, wrapped)

    def add_generic_rpc_handlers(self, generic_handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self._server.add_generic_rpc_handlers([_GuardedGeneric(h, self._guard) for h in generic_handlers])

    def _wrap_all(
        self, service: str, handlers: Mapping[str, grpc.RpcMethodHandler]
    ) -> dict[str, grpc.RpcMethodHandler]:
        return {name: self._guard.wrap(f"/{service}/{name}", h) for name, h in handlers.items()}


class _GuardedGeneric(grpc.GenericRpcHandler):
    """A generic handler whose handlers are wrapped on first use and then reused for every call."""

    def __init__(self, inner: grpc.GenericRpcHandler, guard: CallGuard | ParseGuard) -> None:
        self._inner = inner
        self._guard = guard
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method
        wrapped = self._wrapped.get(method)
        if wrapped is None:
            handler = self._inner.service(handler_call_details)
            if handler is None:
                return None  # not ours; never cached, or callers could grow the cache with made-up names
            wrapped = self._wrapped[method] = self._guard.wrap(method, handler)
        return wrapped
