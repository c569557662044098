"""The synchronous client: ``Client(target).classify(model, images=...)`` and friends."""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import grpc
import numpy as np
from grpc_health.v1 import health_pb2_grpc

from . import health as health_protocol
from .conversions import (
    as_inputs,
    check_top_k,
    chunk_bounds,
    classify_request,
    merge_results,
    metadata_from_proto,
    model_info_from_proto,
    result_from_response,
)
from .errors import ClassifyError, DeadlineExceededError, error_from_rpc
from .retry import Deadline, Retrier, RetryingFuture, RetryPolicy
from .settings import (
    DEFAULT_CHUNK_ROWS,
    DEFAULT_IN_FLIGHT,
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_RETRY,
    DEFAULT_TIMEOUT,
    UNSET,
    CallDefaults,
    ChannelOptions,
    Timeout,
    channel_options,
    with_token,
)
from .streaming import reply_from_proto, stream_request_proto
from .types import ClassifyResult, ModelInfo, ModelMetadata, StreamReply, StreamRequest
from .wire.proto.classify.v1 import classify_pb2, classify_pb2_grpc


class ClassifyFuture:
    """A Classify call in flight; ``result()`` waits for it (retrying per the client's policy) and raises
    ClassifyError on failure."""

    def __init__(self, future: RetryingFuture[classify_pb2.ClassifyResponse, ClassifyResult]) -> None:
        self._future = future

    def result(self, timeout: float | None = None) -> ClassifyResult:
        return self._future.result(timeout=timeout)

    def done(self) -> bool:
        return self._future.done()

    def cancel(self) -> bool:
        return self._future.cancel()


class Client:
    """A connection to a Classify server.

    ``timeout`` and ``headers`` are defaults for every call; each method also takes its own
    ``timeout=`` (seconds, or None for no deadline) and ``headers=`` (merged over the defaults, sent as
    gRPC metadata with lowercase keys). Inputs larger than ``chunk_rows`` rows are split into chunks,
    ``in_flight`` of them sent at once, and the answers joined in input order. Idempotent calls
    (Classify, ListModels, GetModelMetadata) that fail with UNAVAILABLE are sent again per ``retry``
    (see RetryPolicy; ``retry=None`` turns it off), within the call's timeout.
    """

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
        self._defaults = CallDefaults(timeout=timeout, headers=with_token(headers, token))
        args = channel_options(
            max_message_bytes=max_message_bytes, load_balancing=load_balancing, options=options
        )
        self._channel = (
            grpc.secure_channel(target, credentials, options=args)
            if credentials is not None
            else grpc.insecure_channel(target, options=args)
        )
        self._stub = classify_pb2_grpc.ClassifierStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    def __repr__(self) -> str:
        return f"Client({self.target!r})"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    # -- Classify ---------------------------------------------------------------------------------------

    def classify(
        self,
        model: str,
        *,
        images: np.ndarray | None = None,
        texts: Iterable[str] | None = None,
        top_k: int = 1,
        version: int | None = None,
        return_probabilities: bool = False,
        timeout: Timeout = UNSET,
        headers: Mapping[str, str] | None = None,
    ) -> ClassifyResult:
        """Classify N images or N texts with one model; one prediction per item, in input order."""
        inputs = as_inputs(images, texts)
        top_k = check_top_k(top_k)
        deadline = Deadline(self._defaults.timeout_for(timeout))
        metadata = self._defaults.metadata_for(headers)
        bounds = chunk_bounds(len(inputs), self.chunk_rows)

        def request(start: int, stop: int, pinned: int | None) -> classify_pb2.ClassifyRequest:
            return classify_request(
                model,
                inputs.rows(start, stop),
                top_k=top_k,
                version=pinned,
                return_probabilities=return_probabilities,
            )

        first = self._call_classify(request(*bounds[0], version), deadline, metadata)
        if len(bounds) == 1:
            return first
        # The first answer names the version; pinning the rest to it keeps one result from mixing two
        # versions when a new one is loaded while the chunks are in flight.
        rest = self._classify_windowed(
            (request(start, stop, first.version) for start, stop in bounds[1:]), deadline, metadata
        )
        return merge_results([first, *rest])

    def classify_future(
        self,
        model: str,
        *,
        images: np.ndarray | None = None,
        texts: Iterable[str] | None = None,
        top_k: int = 1,
        version: int | None = None,
        return_probabilities: bool = False,
        timeout: Timeout = UNSET,
        headers: Mapping[str, str] | None = None,
    ) -> ClassifyFuture:
        """Start one Classify call without waiting (never split into chunks); see ``classify``."""
        request = classify_request(
            model,
            as_inputs(images, texts),
            top_k=check_top_k(top_k),
            version=version,
            return_probabilities=return_probabilities,
        )
        return self._future(
            request, Deadline(self._defaults.timeout_for(timeout)), self._defaults.metadata_for(headers)
        )

    def _future(
        self, request: classify_pb2.ClassifyRequest, deadline: Deadline, metadata: Any
    ) -> ClassifyFuture:
        def start(remaining: float | None) -> grpc.Future:
            return self._stub.Classify.future(request, timeout=remaining, metadata=metadata)

        return ClassifyFuture(RetryingFuture(start, result_from_response, self._retrier, deadline))

    def _call_classify(
        self, request: classify_pb2.ClassifyRequest, deadline: Deadline, metadata: Any
    ) -> ClassifyResult:
        response = self._retrier.call(
            lambda remaining: self._stub.Classify(request, timeout=remaining, metadata=metadata), deadline
        )
        return result_from_response(response)

    def _classify_windowed(
        self, requests: Iterable[classify_pb2.ClassifyRequest], deadline: Deadline, metadata: Any
    ) -> list[ClassifyResult]:
        """Send requests with at most ``in_flight`` outstanding; answers in request order."""
        pending: deque[ClassifyFuture] = deque()
        results: list[ClassifyResult] = []
        try:
            for request in requests:
                pending.append(self._future(request, deadline, metadata))
                if len(pending) >= self.in_flight:
                    results.append(pending.popleft().result())
            while pending:
                results.append(pending.popleft().result())
        finally:
            for future in pending:  # only left over when a chunk failed: do not leave work running
                future.cancel()
        return results

    # -- Streaming --------------------------------------------------------------------------------------

    def classify_stream(
        self,
        requests: Iterable[StreamRequest],
        *,
        timeout: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Iterator[StreamReply]:
        """Send requests on one ClassifyStream call; yield one reply per request as the server answers.

        A request the server rejects yields a reply with ``error`` set and the stream goes on. The
        timeout covers the whole stream and defaults to none, since streams carry long jobs. A request
        that fails validation here ends the stream after the replies to earlier requests, then raises.
        """
        numbering = itertools.count()
        local_error: list[BaseException] = []

        def outgoing() -> Iterator[classify_pb2.ClassifyRequest]:
            # gRPC drains this generator in its own thread, where an exception would be swallowed and
            # the call cancelled: stop cleanly instead and re-raise in the caller's thread.
            try:
                for request in requests:
                    yield stream_request_proto(request, next(numbering))
            except Exception as error:
                local_error.append(error)

        call = self._stub.ClassifyStream(
            outgoing(), timeout=timeout, metadata=self._defaults.metadata_for(headers)
        )
        try:
            for response in call:
                yield reply_from_proto(response)
        except grpc.RpcError as error:
            if local_error:
                raise local_error[0] from None
            raise error_from_rpc(error) from None
        finally:
            call.cancel()  # a no-op when the stream ended; stops the server when the caller broke off
        if local_error:
            raise local_error[0]

    # -- Models and health ------------------------------------------------------------------------------

    def models(
        self, *, timeout: Timeout = UNSET, headers: Mapping[str, str] | None = None
    ) -> list[ModelInfo]:
        """The models the server answers with, newest ready version of each."""
        response = self._idempotent(self._stub.ListModels, classify_pb2.ListModelsRequest(), timeout, headers)
        return [model_info_from_proto(model) for model in response.models]

    def load_model(
        self, model: str, *, timeout: Timeout = UNSET, headers: Mapping[str, str] | None = None
    ) -> ModelInfo:
        """Load (or reload) a model from the server's repository now; serves it again after an unload."""
        request = classify_pb2.LoadModelRequest(model=model)
        return model_info_from_proto(self._unary(self._stub.LoadModel, request, timeout, headers))

    def unload_model(
        self, model: str, *, timeout: Timeout = UNSET, headers: Mapping[str, str] | None = None
    ) -> ModelInfo:
        """Stop serving a model (queued requests finish) until ``load_model``."""
        request = classify_pb2.UnloadModelRequest(model=model)
        return model_info_from_proto(self._unary(self._stub.UnloadModel, request, timeout, headers))

    def metadata(
        self,
        model: str,
        version: int | None = None,
        *,
        timeout: Timeout = UNSET,
        headers: Mapping[str, str] | None = None,
    ) -> ModelMetadata:
        """Task, labels, input spec, metrics and versions of a model (newest ready version by default)."""
        request = classify_pb2.GetModelMetadataRequest(model=model, version=version or 0)
        return metadata_from_proto(self._idempotent(self._stub.GetModelMetadata, request, timeout, headers))

    def health(
        self, service: str = "", *, timeout: Timeout = UNSET, headers: Mapping[str, str] | None = None
    ) -> str:
        """ "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN" or "UNKNOWN" for the server ("") or a model name.

        Raises UnavailableError when the server cannot be reached.
        """
        request = health_protocol.health_request(service)
        try:
            response = self._health.Check(
                request,
                timeout=self._defaults.timeout_for(timeout),
                metadata=self._defaults.metadata_for(headers),
            )
        except grpc.RpcError as error:
            if health_protocol.is_unknown_service(error):
                return health_protocol.SERVICE_UNKNOWN
            raise error_from_rpc(error) from None
        return health_protocol.status_name(response)

    def wait_until_ready(
        self,
        model: str | None = None,
        *,
        timeout: float = 60.0,
        poll_interval: float = 0.2,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Poll health until the server (or ``model``) is SERVING; raise DeadlineExceededError if not in time.

        An unreachable server counts as not ready yet: this is what scripts call right after starting one.
        """
        service = model or ""
        deadline = time.monotonic() + timeout
        last = "unreachable"
        while True:
            remaining = deadline - time.monotonic()
            try:
                last = self.health(service, timeout=max(min(remaining, 5.0), 0.05), headers=headers)
            except ClassifyError as error:
                last = f"{error.code.name}: {error.details}"
            if last == health_protocol.SERVING:
                return
            if time.monotonic() + poll_interval > deadline:
                raise DeadlineExceededError(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    f"{service or 'server'} at {self.target} not SERVING after {timeout:g}s (last: {last})",
                )
            time.sleep(poll_interval)

    def _unary(self, method: Any, request: Any, timeout: Timeout, headers: Mapping[str, str] | None) -> Any:
        try:
            return method(
                request,
                timeout=self._defaults.timeout_for(timeout),
                metadata=self._defaults.metadata_for(headers),
            )
        except grpc.RpcError as error:
            raise error_from_rpc(error) from None

    def _idempotent(
        self, method: Any, request: Any, timeout: Timeout, headers: Mapping[str, str] | None
    ) -> Any:
        """A unary call that is safe to send twice, so it retries per the client's policy."""
        metadata = self._defaults.metadata_for(headers)
        return self._retrier.call(
            lambda remaining: method(request, timeout=remaining, metadata=metadata),
            Deadline(self._defaults.timeout_for(timeout)),
        )
