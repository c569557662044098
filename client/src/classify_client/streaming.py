"""ClassifyStream messages ⇄ typed requests and replies; shared by the sync and the asyncio client."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from typing import Any

import grpc

from .conversions import as_inputs, check_top_k, classify_request, result_from_response
from .errors import error_for_status, error_from_rpc, status_from_number
from .types import StreamReply, StreamRequest
from .wire.proto.classify.v1 import classify_pb2


def stream_request_proto(request: StreamRequest, number: int) -> classify_pb2.ClassifyRequest:
    """The wire form of one streamed request; ``number`` names it when the caller gave no request_id."""
    return classify_request(
        request.model,
        as_inputs(request.images, request.texts),
        top_k=check_top_k(request.top_k),
        version=request.version,
        return_probabilities=request.return_probabilities,
        request_id=request.request_id if request.request_id is not None else str(number),
    )


def reply_from_proto(message: classify_pb2.ClassifyStreamResponse) -> StreamReply:
    if message.HasField("error"):
        error = error_for_status(status_from_number(message.error.code), message.error.message)
        return StreamReply(request_id=message.request_id, error=error)
    return StreamReply(request_id=message.request_id, result=result_from_response(message.response))


class StreamSession:
    """One ClassifyStream call's outgoing side: numbering requests and keeping a local validation error.

    gRPC drains the outgoing iterator in a thread (sync) or a task (asyncio) of its own, where an
    exception would be swallowed and the call cancelled: the iterator stops cleanly instead, and the
    error is raised in the caller's thread once the replies to earlier requests are out.
    """

    def __init__(self, requests: Iterable[StreamRequest] | AsyncIterable[StreamRequest]) -> None:
        self._requests: Any = requests  # an Iterable for the sync client, either kind for asyncio
        self._numbers = itertools.count()
        self._error: BaseException | None = None

    def outgoing(self) -> Iterator[classify_pb2.ClassifyRequest]:
        try:
            for request in self._requests:
                yield stream_request_proto(request, next(self._numbers))
        except Exception as error:
            self._error = error

    async def outgoing_async(self) -> AsyncIterator[classify_pb2.ClassifyRequest]:
        try:
            async for request in _aiter(self._requests):
                yield stream_request_proto(request, next(self._numbers))
        except Exception as error:
            self._error = error

    def failure(self, error: grpc.RpcError) -> BaseException:
        """What to raise when the call failed: the local error that ended it, else the server's."""
        return self._error if self._error is not None else error_from_rpc(error)

    def raise_local_error(self) -> None:
        if self._error is not None:
            raise self._error


async def _aiter(items: Iterable[Any] | AsyncIterable[Any]) -> AsyncIterator[Any]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item
