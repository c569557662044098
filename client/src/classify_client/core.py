"""What ``Client`` and ``AsyncClient`` share: everything but the transport call.

Both clients inherit ``ClientCore``: the constructor's checks, the channel (its options, TLS credentials,
token and load-balancing policy), the call defaults and the retrier, and the building of every request
with the reading of its answer. A client method asks the core for a prepared call and only makes the
transport call, blocking (``Client``) or awaited (``AsyncClient``), the way tritonclient's two clients
share one request builder. So the two cannot drift: a behaviour lives here once, and
tests/test_client_parity.py checks that both expose the same methods with the same signatures.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

import grpc
import numpy as np
from grpc_health.v1 import health_pb2_grpc

from . import health as health_protocol
from .conversions import (
    Inputs,
    as_inputs,
    check_priority,
    check_top_k,
    chunk_bounds,
    classify_request,
    metadata_from_proto,
    model_info_from_proto,
)
from .errors import ClassifyError
from .explanations import ExplainResult, explain_request, explanation_from_proto
from .health import ReadinessPoll, unknown_service_status
from .retry import Deadline, Retrier, RetryPolicy
from .settings import (
    DEFAULT_CHUNK_ROWS,
    DEFAULT_IN_FLIGHT,
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_RETRY,
    DEFAULT_TIMEOUT,
    CallDefaults,
    ChannelOptions,
    Timeout,
    channel_options,
    with_token,
)
from .streaming import StreamSession
from .types import ModelInfo, ModelMetadata, StreamRequest
from .wire.proto.classify.v1 import classify_pb2, classify_pb2_grpc

T = TypeVar("T")
Metadata = tuple[tuple[str, str], ...] | None


def _reraise(error: ClassifyError) -> Any:
    raise error


@dataclass(frozen=True)
class UnaryCall(Generic[T]):
    """One unary RPC ready to send: the transport sends it through ``retrier`` and gets ``read``'s value.

    ``retrier`` is the client's own for idempotent calls and one that never retries otherwise; either way
    a failure comes out as a ClassifyError. ``recover`` turns a failure into an answer where one exists
    (a health check of an unknown service), or re-raises it.
    """

    method: Callable[..., Any]  # a stub's method: blocking, or returning an awaitable on grpc.aio
    request: Any
    read: Callable[[Any], T]
    retrier: Retrier
    deadline: Deadline
    metadata: Metadata
    recover: Callable[[ClassifyError], T] = _reraise

    def send(self, remaining: float | None) -> Any:
        return self.method(self.request, timeout=remaining, metadata=self.metadata)


@dataclass(frozen=True)
class ClassifyPlan:
    """One ``classify`` call cut into chunks of at most ``chunk_rows`` rows, sharing one deadline."""

    model: str
    inputs: Inputs
    top_k: int
    version: int | None
    return_probabilities: bool
    deadline: Deadline
    metadata: Metadata
    bounds: list[tuple[int, int]]
    version_label: str = ""
    priority: int = classify_pb2.PRIORITY_NORMAL

    def request(
        self, start: int, stop: int, version: int | None, version_label: str = ""
    ) -> classify_pb2.ClassifyRequest:
        return classify_request(
            self.model,
            self.inputs.rows(start, stop),
            top_k=self.top_k,
            version=version,
            return_probabilities=self.return_probabilities,
            version_label=version_label,
            priority=self.priority,
        )

    def first_request(self) -> classify_pb2.ClassifyRequest:
        return self.request(*self.bounds[0], self.version, self.version_label)

    def whole_request(self) -> classify_pb2.ClassifyRequest:
        return self.request(0, len(self.inputs), self.version, self.version_label)

    def later_bounds(self) -> list[tuple[int, int]]:
        """The chunks after the first. Their requests are pinned to the version the first answer names,
        so one result never mixes two versions when a new one is loaded while chunks are in flight."""
        return self.bounds[1:]


class ClientCore:
    """The shared part of a connection to a Classify server; see ``Client`` for every argument."""

    # The gRPC flavour the channel comes from: the ``grpc`` module or ``grpc.aio`` (same factory names).
    _transport: ClassVar[Any] = grpc

    def __init__(
        self,
        target: str,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        headers: Mapping[str, str] | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        in_flight: int = DEFAULT_IN_FLIGHT,
        load_balancing: str | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        token: str | None = None,
        options: ChannelOptions = (),
        retry: RetryPolicy | None = DEFAULT_RETRY,
    ) -> None:
        if chunk_rows < 1 or in_flight < 1:
            raise ValueError("chunk_rows and in_flight must be at least 1")
        self.target = target
        self.chunk_rows = chunk_rows
        self.in_flight = in_flight
        self._retrier = Retrier.of(retry)
        self._no_retry = Retrier.of(None)  # for calls that must not be sent twice
        self._defaults = CallDefaults(timeout=timeout, headers=with_token(headers, token))
        args = channel_options(
            max_message_bytes=max_message_bytes,
            load_balancing=load_balancing,
            options=options,
            target=target,
        )
        self._channel = (
            self._transport.secure_channel(target, credentials, options=args)
            if credentials is not None
            else self._transport.insecure_channel(target, options=args)
        )
        self._stub = classify_pb2_grpc.ClassifierStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.target!r})"

    # -- Classify ---------------------------------------------------------------------------------------

    def _classify_plan(
        self,
        model: str,
        *,
        images: np.ndarray | None,
        texts: Iterable[str] | None,
        top_k: int,
        version: int | None,
        return_probabilities: bool,
        timeout: Timeout,
        headers: Mapping[str, str] | None,
        version_label: str | None = None,
        priority: str | None = None,
    ) -> ClassifyPlan:
        inputs = as_inputs(images, texts)
        top_k = check_top_k(top_k)
        return ClassifyPlan(
            model=model,
            inputs=inputs,
            top_k=top_k,
            version=version,
            return_probabilities=return_probabilities,
            deadline=Deadline(self._defaults.timeout_for(timeout)),
            metadata=self._defaults.metadata_for(headers),
            bounds=chunk_bounds(len(inputs), self.chunk_rows),
            version_label=version_label or "",
            priority=check_priority(priority),
        )

    def _classify_sender(
        self, request: classify_pb2.ClassifyRequest, metadata: Metadata
    ) -> Callable[[float | None], Any]:
        """Classify is idempotent: the transport sends this through the client's retrier."""
        return lambda remaining: self._stub.Classify(request, timeout=remaining, metadata=metadata)

    # -- Streaming --------------------------------------------------------------------------------------

    def _open_stream(
        self,
        requests: Iterable[StreamRequest] | AsyncIterable[StreamRequest],
        outgoing: Callable[[StreamSession], Any],
        timeout: float | None,
        headers: Mapping[str, str] | None,
    ) -> tuple[StreamSession, Any]:
        """Start the ClassifyStream call; ``outgoing`` picks the session's sync or async iterator."""
        session = StreamSession(requests)
        call = self._stub.ClassifyStream(
            outgoing(session), timeout=timeout, metadata=self._defaults.metadata_for(headers)
        )
        return session, call

    # -- Models and health ------------------------------------------------------------------------------

    def _unary_call(
        self,
        method: Callable[..., Any],
        request: Any,
        read: Callable[[Any], T],
        *,
        idempotent: bool,
        timeout: Timeout,
        headers: Mapping[str, str] | None,
        recover: Callable[[ClassifyError], T] = _reraise,
    ) -> UnaryCall[T]:
        return UnaryCall(
            method=method,
            request=request,
            read=read,
            retrier=self._retrier if idempotent else self._no_retry,
            deadline=Deadline(self._defaults.timeout_for(timeout)),
            metadata=self._defaults.metadata_for(headers),
            recover=recover,
        )

    def _models_call(self, timeout: Timeout, headers: Mapping[str, str] | None) -> UnaryCall[list[ModelInfo]]:
        return self._unary_call(
            self._stub.ListModels,
            classify_pb2.ListModelsRequest(),
            lambda response: [model_info_from_proto(model) for model in response.models],
            idempotent=True,
            timeout=timeout,
            headers=headers,
        )

    def _load_model_call(
        self, model: str, timeout: Timeout, headers: Mapping[str, str] | None
    ) -> UnaryCall[ModelInfo]:
        # Not idempotent as far as retrying goes: a load that timed out may still be under way.
        return self._unary_call(
            self._stub.LoadModel,
            classify_pb2.LoadModelRequest(model=model),
            model_info_from_proto,
            idempotent=False,
            timeout=timeout,
            headers=headers,
        )

    def _unload_model_call(
        self, model: str, timeout: Timeout, headers: Mapping[str, str] | None
    ) -> UnaryCall[ModelInfo]:
        return self._unary_call(
            self._stub.UnloadModel,
            classify_pb2.UnloadModelRequest(model=model),
            model_info_from_proto,
            idempotent=False,
            timeout=timeout,
            headers=headers,
        )

    def _set_version_label_call(
        self, model: str, label: str, version: int, timeout: Timeout, headers: Mapping[str, str] | None
    ) -> UnaryCall[dict[str, int]]:
        return self._unary_call(
            self._stub.SetVersionLabel,
            classify_pb2.SetVersionLabelRequest(model=model, label=label, version=version),
            lambda answer: {name: int(v) for name, v in sorted(answer.labels.items())},
            idempotent=True,  # setting a label twice leaves it as setting it once
            timeout=timeout,
            headers=headers,
        )

    def _explain_call(
        self,
        model: str,
        inputs: tuple[Any, Any],
        options: dict[str, Any],
        timeout: Timeout,
        headers: Mapping[str, str] | None,
    ) -> UnaryCall[ExplainResult]:
        """One Explain request (no chunking: explain work is heavy per item, callers send few)."""
        check_top_k(options["top_k"])
        request = explain_request(model, as_inputs(*inputs), **options)  # inputs: (images, texts)
        # Read-only like Classify, so UNAVAILABLE is retried.
        return self._unary_call(
            self._stub.Explain,
            request,
            explanation_from_proto,
            idempotent=True,
            timeout=timeout,
            headers=headers,
        )

    def _metadata_call(
        self, model: str, version: int | None, timeout: Timeout, headers: Mapping[str, str] | None
    ) -> UnaryCall[ModelMetadata]:
        return self._unary_call(
            self._stub.GetModelMetadata,
            classify_pb2.GetModelMetadataRequest(model=model, version=version or 0),
            metadata_from_proto,
            idempotent=True,
            timeout=timeout,
            headers=headers,
        )

    def _health_call(
        self, service: str, timeout: Timeout, headers: Mapping[str, str] | None
    ) -> UnaryCall[str]:
        return self._unary_call(
            self._health.Check,
            health_protocol.health_request(service),
            health_protocol.status_name,
            idempotent=False,
            timeout=timeout,
            headers=headers,
            recover=unknown_service_status,
        )

    def _readiness_poll(self, model: str | None, timeout: float, poll_interval: float) -> ReadinessPoll:
        return ReadinessPoll(self.target, model, timeout, poll_interval)
