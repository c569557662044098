"""The native classify.v1.Classifier servicer: proto messages in and out, nothing else."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import grpc

from classify_client.wire.proto.classify.v1 import classify_pb2 as pb
from classify_client.wire.proto.classify.v1 import classify_pb2_grpc as pb_grpc
from classify_server.errors import InvalidInputError, grpc_errors, status_of
from classify_server.protocols.native_explain import explain_call, explain_response, payload_of
from classify_server.protocols.streams import ordered_answers
from classify_server.serving.batcher import BatcherStats
from classify_server.serving.data_plane import Classification, ClassifyCall, DataPlane
from classify_server.serving.registry import ModelState
from classify_server.serving.repository import ModelSpec
from classify_server.serving.scheduling import Priority

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Classifier"].full_name


class ClassifierServicer(pb_grpc.ClassifierServicer):
    def __init__(self, data_plane: DataPlane, stream_window: int) -> None:
        self._plane = data_plane
        self._stream_window = stream_window

    @grpc_errors
    async def Classify(
        self, request: pb.ClassifyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ClassifyResponse:
        result = await self._plane.classify(_call(request, context.time_remaining()))
        return _response(request, result)

    async def ClassifyStream(
        self, request_iterator: AsyncIterator[pb.ClassifyRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ClassifyStreamResponse]:
        # Requests are processed concurrently (so they batch) up to the window, answered in arrival order.
        async for reply in ordered_answers(
            request_iterator, lambda request: self._answer_streamed(request, context), self._stream_window
        ):
            yield reply

    async def _answer_streamed(
        self, request: pb.ClassifyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ClassifyStreamResponse:
        try:
            result = await self._plane.classify(_call(request, context.time_remaining()))
        except Exception as exc:
            code, message = status_of(exc, request.model)
            error = pb.StreamError(code=code.value[0], message=message)
            return pb.ClassifyStreamResponse(request_id=request.request_id, error=error)
        return pb.ClassifyStreamResponse(request_id=request.request_id, response=_response(request, result))

    @grpc_errors
    async def ListModels(
        self, request: pb.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListModelsResponse:
        summaries = [
            _summary(state, self._plane.version_labels(state.name)) for state in self._plane.model_states()
        ]
        return pb.ListModelsResponse(models=summaries)

    @grpc_errors
    async def GetModelMetadata(
        self, request: pb.GetModelMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelMetadata:
        version, label = _version_choice(request)
        spec, versions = self._plane.metadata(request.model, version, label)
        return pb.ModelMetadata(
            name=spec.name,
            version=spec.version,
            task=spec.task,
            labels=list(spec.labels),
            input=pb.InputSpec(
                kind=spec.input.kind,
                dtype=spec.input.dtype,
                shape=list(spec.input.shape),
                description=spec.input.description,
            ),
            metrics=spec.metrics,
            quick=spec.quick,
            versions=versions,
            model_json=json.dumps(spec.raw, sort_keys=True),
        )

    @grpc_errors
    async def LoadModel(
        self, request: pb.LoadModelRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelSummary:
        return _summary(await self._plane.load_model(request.model))

    @grpc_errors
    async def UnloadModel(
        self, request: pb.UnloadModelRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelSummary:
        return _summary(await self._plane.unload_model(request.model))

    @grpc_errors
    async def SetVersionLabel(
        self, request: pb.SetVersionLabelRequest, context: grpc.aio.ServicerContext
    ) -> pb.VersionLabels:
        labels = self._plane.set_version_label(request.model, request.label, request.version)
        return pb.VersionLabels(model=request.model, labels=labels)

    @grpc_errors
    async def Explain(
        self, request: pb.ExplainRequest, context: grpc.aio.ServicerContext
    ) -> pb.ExplainResponse:
        result = await self._plane.explain(explain_call(request, context.time_remaining()))
        return explain_response(request, result)

    @grpc_errors
    async def GetModelStatistics(
        self, request: pb.GetModelStatisticsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetModelStatisticsResponse:
        return pb.GetModelStatisticsResponse(
            models=[
                _statistics(spec, stats, queued)
                for spec, stats, queued in self._plane.statistics(request.model)
            ]
        )


def _summary(state: ModelState, labels: dict[str, int] | None = None) -> pb.ModelSummary:
    return pb.ModelSummary(
        version_labels=labels or {},
        name=state.name,
        version=state.version,
        task=state.task,
        state=state.state,
        reason=state.reason,
        versions=[
            pb.VersionStatus(version=v.version, state=v.state, reason=v.reason) for v in state.versions
        ],
    )


def _statistics(spec: ModelSpec, stats: BatcherStats, queued_rows: int) -> pb.ModelStatistics:
    return pb.ModelStatistics(
        name=spec.name,
        version=spec.version,
        requests=stats.requests,
        rows=stats.rows,
        executions=stats.executions,
        executed_rows=stats.executed_rows,
        expired=stats.expired,
        cancelled=stats.cancelled,
        rejected=stats.rejected,
        failed=stats.failed,
        queue_seconds=stats.queue_seconds,
        compute_seconds=stats.compute_seconds,
        batch_sizes=[
            pb.BatchSizeCount(batch_size=size, executions=count)
            for size, count in sorted(stats.batch_sizes.items())
        ],
        queued_rows=queued_rows,
    )


def _version_choice(request: pb.ClassifyRequest | pb.GetModelMetadataRequest) -> tuple[int | None, str]:
    if request.version and request.version_label:
        raise InvalidInputError(
            f"the request names version {request.version} and version_label {request.version_label!r}; "
            "set at most one of them"
        )
    return request.version or None, request.version_label


def _call(request: pb.ClassifyRequest, time_remaining: float | None) -> ClassifyCall:
    version, label = _version_choice(request)
    return ClassifyCall(
        model=request.model,
        version=version,
        version_label=label,
        payload=payload_of(request),
        top_k=request.top_k or 1,
        time_remaining=time_remaining,
        priority=_priority(request.priority),
    )


# The proto's enum (PRIORITY_NORMAL is 0, unset) to the batcher's order.
_PRIORITIES = {
    pb.PRIORITY_LOW: Priority.LOW,
    pb.PRIORITY_NORMAL: Priority.NORMAL,
    pb.PRIORITY_HIGH: Priority.HIGH,
}


def _priority(value: int) -> Priority | None:
    """The request's priority field; unset (normal) leaves the x-classify-priority metadata to decide."""
    if value == pb.PRIORITY_NORMAL:
        return None
    if value not in _PRIORITIES:
        raise InvalidInputError(
            f"priority is {value}; expected PRIORITY_HIGH (2), PRIORITY_NORMAL (0, unset) or PRIORITY_LOW (1)"
        )
    return _PRIORITIES[value]


def _response(request: pb.ClassifyRequest, result: Classification) -> pb.ClassifyResponse:
    response = pb.ClassifyResponse(
        model=result.spec.name, version=result.spec.version, request_id=request.request_id
    )
    if request.answer_format == pb.ANSWER_FORMAT_ARRAYS:
        _fill_arrays(response.arrays, result, request.return_probabilities)
    else:
        _fill_predictions(response.predictions, result, request.return_probabilities)
    return response


def _fill_arrays(arrays: pb.ArrayAnswers, result: Classification, with_probabilities: bool) -> None:
    rows, top_k = result.top_indices.shape
    arrays.rows = rows
    arrays.top_k = top_k
    arrays.top_indices = result.top_indices.astype("<i4", copy=False).tobytes()
    arrays.top_scores = result.top_scores.astype("<f4", copy=False).tobytes()
    if with_probabilities:
        arrays.probabilities = result.probabilities.astype("<f4", copy=False).tobytes()
    arrays.labels.extend(result.spec.labels)


def _fill_predictions(predictions: Any, result: Classification, with_probabilities: bool) -> None:
    # add() builds each message in place; constructing and then copying them costs three times as much.
    labels = result.spec.labels
    probabilities = result.probabilities.tolist() if with_probabilities else None
    for row, (indices, scores) in enumerate(
        zip(result.top_indices.tolist(), result.top_scores.tolist(), strict=True)
    ):
        prediction = predictions.add()
        classes = prediction.classes
        for index, score in zip(indices, scores, strict=True):
            classes.add(index=index, label=labels[index], score=score)
        if probabilities is not None:
            prediction.probabilities.extend(probabilities[row])
