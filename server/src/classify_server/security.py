"""Transport security and caller authentication: TLS or mutual TLS from files, bearer tokens.

Tokens are checked by a server interceptor before any handler runs. Health checks stay open so load
balancers and orchestrators can probe without a secret.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc

from classify_server.errors import UnauthenticatedError, status_of
from classify_server.request_ids import REQUEST_ID_HEADER, current_call

OPEN_METHOD_PREFIXES = ("/grpc.health.v1.Health/",)


def server_credentials(
    cert_file: Path, key_file: Path, client_ca_file: Path | None
) -> grpc.ServerCredentials:
    """TLS with the server's certificate; with a client CA, callers must present a certificate it signed."""
    pair = (read_bytes(key_file, "TLS key"), read_bytes(cert_file, "TLS certificate"))
    if client_ca_file is None:
        return grpc.ssl_server_credentials([pair])
    return grpc.ssl_server_credentials(
        [pair], root_certificates=read_bytes(client_ca_file, "client CA"), require_client_auth=True
    )


def read_bytes(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise RuntimeError(f"cannot read the {what} file {path}: {exc.strerror or exc}") from exc


def load_tokens(tokens: Iterable[str], tokens_file: Path | None) -> frozenset[str]:
    """Accepted bearer tokens: those given directly plus one per non-blank, non-# line of the file."""
    found = {token.strip() for token in tokens if token.strip()}
    if tokens_file is not None:
        lines = read_bytes(tokens_file, "tokens").decode("utf-8").splitlines()
        found |= {line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")}
    return frozenset(found)


class TokenAuthInterceptor(grpc.aio.ServerInterceptor):
    """Lets a call through only with ``authorization: Bearer <token>`` naming an accepted token."""

    def __init__(self, tokens: frozenset[str]) -> None:
        if not tokens:
            raise ValueError("token authentication needs at least one token")
        self._tokens = [token.encode() for token in tokens]

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(OPEN_METHOD_PREFIXES):
            return handler
        metadata = dict(handler_call_details.invocation_metadata or ())
        problem = token_problem(metadata.get("authorization"), self._tokens)
        if problem is None:
            return handler
        # Refused before the call guard runs: log it here, under the caller's request id when it sent one.
        request_id = str(metadata.get(REQUEST_ID_HEADER, ""))
        with _in_call(request_id, handler_call_details.method):
            code, message = status_of(UnauthenticatedError(problem))
        return _refusing(handler, code, message)


def token_problem(header: Any, tokens: list[bytes], carrier: str = "metadata") -> str | None:
    """What is wrong with an ``authorization`` value (gRPC metadata or HTTP header), or None if accepted."""
    if header is None:
        return f"missing credentials: send the {carrier} 'authorization: Bearer <token>'"
    scheme, _, token = str(header).partition(" ")
    if scheme.lower() != "bearer" or not token:
        return "malformed credentials: expected 'authorization: Bearer <token>'"
    candidate = token.strip().encode()
    # Compare against every token in constant time, so timing reveals neither which nor how much matched.
    if not any([hmac.compare_digest(candidate, known) for known in tokens]):  # noqa: C419
        return "invalid token"
    return None


@contextmanager
def _in_call(request_id: str, method: str) -> Iterator[None]:
    token = current_call.set((request_id, method))
    try:
        yield
    finally:
        current_call.reset(token)


def _refusing(handler: grpc.RpcMethodHandler, code: grpc.StatusCode, message: str) -> grpc.RpcMethodHandler:
    """A handler of the same shape as ``handler`` that only refuses the call."""

    async def refuse_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(code, message)

    async def refuse_stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(code, message)
        yield  # pragma: no cover - makes this an async generator, as stream handlers are

    kind = (handler.request_streaming, handler.response_streaming)
    factories = {
        (False, False): (grpc.unary_unary_rpc_method_handler, refuse_unary),
        (True, False): (grpc.stream_unary_rpc_method_handler, refuse_unary),
        (False, True): (grpc.unary_stream_rpc_method_handler, refuse_stream),
        (True, True): (grpc.stream_stream_rpc_method_handler, refuse_stream),
    }
    factory, behaviour = factories[kind]
    return factory(
        behaviour,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )
