"""The asyncio client: ``AsyncClient`` has the methods of ``Client`` as coroutines (grpc.aio)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from typing import Any

import grpc
import grpc.aio
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
from .retry import Deadline, Retrier, RetryPolicy
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


class AsyncClient:
    """A grpc.aio connection to a Classify server; see ``Client`` for the meaning of every argument.

    Create it inside a running event loop (grpc.aio channels belong to the loop that made them);
    ``async with AsyncClient(target) as client:`` closes it.
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
            grpc.aio.secure_channel(target, credentials, options=args)
            if credentials is not None
            else grpc.aio.insecure_channel(target, options=args)
        )
        self._stub = classify_pb2_grpc.ClassifierStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    def __repr__(self) -> str:
        return f"AsyncClient({self.target!r})"

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    # -- Classify ---------------------------------------------------------------------------------------

    async def classify(
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

        first = await self._call_classify(request(*bounds[0], version), deadline, metadata)
        if len(bounds) == 1:
            return first
        # Pin the version of the first answer, as the sync client does (one result, one version).
        semaphore = asyncio.Semaphore(self.in_flight)

        async def chunk(start: int, stop: int) -> ClassifyResult:
            async with semaphore:  # requests are built only when sent: memory stays bounded too
                return await self._call_classify(request(start, stop, first.version), deadline, metadata)

        tasks = [asyncio.ensure_future(chunk(start, stop)) for start, stop in bounds[1:]]
        try:
            rest = await asyncio.gather(*tasks)
        finally:
            for task in tasks:  # only unfinished when a chunk failed: do not leave work running
                task.cancel()
        return merge_results([first, *rest])

    async def _call_classify(
        self, request: classify_pb2.ClassifyRequest, deadline: Deadline, metadata: Any
    ) -> ClassifyResult:
        response = await self._retrier.call_async(
            lambda remaining: self._stub.Classify(request, timeout=remaining, metadata=metadata), deadline
        )
        return result_from_response(response)

    # -- Streaming --------------------------------------------------------------------------------------

    async def classify_stream(
        self,
        requests: Iterable[StreamRequest] | AsyncIterable[StreamRequest],
        *,
        timeout: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> AsyncIterator[StreamReply]:
        """Send requests on one ClassifyStream call; yield one reply per request (see Client)."""
        local_error: list[BaseException] = []

        async def outgoing() -> AsyncIterator[classify_pb2.ClassifyRequest]:
            # grpc.aio drains this in a task of its own: keep a validation error for the caller.
            try:
                number = 0
                async for request in _aiter(requests):
                    yield stream_request_proto(request, number)
                    number += 1
            except Exception as error:
                local_error.append(error)

        call = self._stub.ClassifyStream(
            outgoing(), timeout=timeout, metadata=self._defaults.metadata_for(headers)
        )
        try:
            async for response in call:
                yield reply_from_proto(response)
        except grpc.RpcError as error:
            if local_error:
                raise local_error[0] from None
            raise error_from_rpc(error) from None
        finally:
            call.cancel()
        if local_error:
            raise local_error[0]

    # -- Models and health ------------------------------------------------------------------------------

    async def models(
        self, *, timeout: Timeout = UNSET, headers: Mapping[str, str] | None = None
    ) -> list[ModelInfo]:
        response = await self._idempotent(
            self._stub.ListModels, classify_pb2.ListModelsRequest(), timeout, headers
        )
        return [model_info_from_proto(model) for model in response.models]

    async def metadata(
        self,
        model: str,
        version: int | None = None,
        *,
        timeout: Timeout = UNSET,
        headers: Mapping[str, str] | None = None,
    ) -> ModelMetadata:
        request = classify_pb2.GetModelMetadataRequest(model=model, version=version or 0)
        return metadata_from_proto(
            await self._idempotent(self._stub.GetModelMetadata, request, timeout, headers)
        )

    async def health(
        self, service: str = "", *, timeout: Timeout = UNSET, headers: Mapping[str, str] | None = None
    ) -> str:
        try:
            response = await self._health.Check(
                health_protocol.health_request(service),
                timeout=self._defaults.timeout_for(timeout),
                metadata=self._defaults.metadata_for(headers),
            )
        except grpc.RpcError as error:
            if health_protocol.is_unknown_service(error):
                return health_protocol.SERVICE_UNKNOWN
            raise error_from_rpc(error) from None
        return health_protocol.status_name(response)

    async def wait_until_ready(
        self,
        model: str | None = None,
        *,
        timeout: float = 60.0,
        poll_interval: float = 0.2,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        service = model or ""
        deadline = time.monotonic() + timeout
        last = "unreachable"
        while True:
            remaining = deadline - time.monotonic()
            try:
                last = await self.health(service, timeout=max(min(remaining, 5.0), 0.05), headers=headers)
            except ClassifyError as error:
                last = f"{error.code.name}: {error.details}"
            if last == health_protocol.SERVING:
                return
            if time.monotonic() + poll_interval > deadline:
                raise DeadlineExceededError(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    f"{service or 'server'} at {self.target} not SERVING after {timeout:g}s (last: {last})",
                )
            await asyncio.sleep(poll_interval)

    async def _idempotent(
        self, method: Any, request: Any, timeout: Timeout, headers: Mapping[str, str] | None
    ) -> Any:
        """A unary call that is safe to send twice, so it retries per the client's policy."""
        metadata = self._defaults.metadata_for(headers)
        return await self._retrier.call_async(
            lambda remaining: method(request, timeout=remaining, metadata=metadata),
            Deadline(self._defaults.timeout_for(timeout)),
        )


async def _aiter(items: Iterable[Any] | AsyncIterable[Any]) -> AsyncIterator[Any]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item
