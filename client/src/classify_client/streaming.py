"""ClassifyStream messages ⇄ typed requests and replies; shared by the sync and the asyncio client."""

from __future__ import annotations

from .conversions import as_inputs, check_top_k, classify_request, result_from_response
from .errors import error_for_status, status_from_number
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
