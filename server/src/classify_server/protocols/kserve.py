"""KServe V2 / Open Inference Protocol (``inference.GRPCInferenceService``) over the shared data plane.

Tensors in, tensors out, nothing else: the request's input tensor becomes the same payload the native API
produces (see tensors.py) and goes through the same data plane and batcher. Speaks what tritonclient
needs: raw and typed tensor contents, the classification extension (an output requested with parameter
``classification: k`` comes back as BYTES ``"score:index:label"``, best first, as Triton formats it) and
Triton's ModelStreamInfer.
"""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator

import grpc
import numpy as np

from classify_client.wire.proto.inference import grpc_predict_v2_pb2 as pb
from classify_client.wire.proto.inference import grpc_predict_v2_pb2_grpc as pb_grpc
from classify_server import __version__
from classify_server.errors import ClassifyServerError, InvalidInputError, grpc_errors, status_of
from classify_server.protocols.streams import ordered_answers
from classify_server.protocols.tensors import check_count, element_count, payload_for
from classify_server.serving.data_plane import Classification, ClassifyCall, DataPlane
from classify_server.serving.labels import LABEL_FORM, LABEL_PATTERN, LATEST
from classify_server.serving.registry import READY
from classify_server.serving.repository import ModelSpec

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
PROTOCOL = "kserve-v2"  # the metrics label of requests that came this way
SERVER_NAME = "classify"
EXTENSIONS = ("classification",)
PLATFORM = "tensorflow_savedmodel"
CLASSIFICATION = "classification"
IMAGE_DTYPES = {"UINT8": np.dtype("u1"), "FP32": np.dtype("<f4")}
TEXT_DTYPE = "BYTES"
LENGTH_PREFIX = struct.Struct("<I")


def expected_input(spec: ModelSpec) -> str:
    if spec.input.kind == "image":
        return (
            f"{spec.input.name!r}: UINT8 (0-255) or FP32 (in [0, 1]) with shape [-1, 28, 28] or "
            "[-1, 28, 28, 1]"
        )
    return f"{spec.input.name!r}: BYTES (UTF-8 text) with shape [-1]"


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, data_plane: DataPlane, stream_window: int) -> None:
        self._plane = data_plane
        self._stream_window = stream_window

    @grpc_errors
    async def ServerLive(self, request: pb.ServerLiveRequest, context: grpc.aio.ServicerContext):
        return pb.ServerLiveResponse(live=True)

    @grpc_errors
    async def ServerReady(self, request: pb.ServerReadyRequest, context: grpc.aio.ServicerContext):
        ready = any(state.state == READY for state in self._plane.model_states())
        return pb.ServerReadyResponse(ready=ready)

    @grpc_errors
    async def ModelReady(self, request: pb.ModelReadyRequest, context: grpc.aio.ServicerContext):
        version, label = parse_version(request.version)
        try:
            self._plane.metadata(request.name, version, label)
        except ClassifyServerError as exc:
            if isinstance(exc, InvalidInputError):
                raise
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(ready=True)

    @grpc_errors
    async def ServerMetadata(self, request: pb.ServerMetadataRequest, context: grpc.aio.ServicerContext):
        return pb.ServerMetadataResponse(name=SERVER_NAME, version=__version__, extensions=EXTENSIONS)

    @grpc_errors
    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: grpc.aio.ServicerContext):
        spec, versions = self._plane.metadata(request.name, *parse_version(request.version))
        tensor = pb.ModelMetadataResponse.TensorMetadata
        if spec.input.kind == "image":
            inputs = [tensor(name=spec.input.name, datatype="UINT8", shape=[-1, 28, 28])]
        else:
            inputs = [tensor(name=spec.input.name, datatype=TEXT_DTYPE, shape=[-1])]
        outputs = [tensor(name=spec.output_name, datatype="FP32", shape=[-1, len(spec.labels)])]
        return pb.ModelMetadataResponse(
            name=spec.name,
            versions=[str(v) for v in versions],
            platform=PLATFORM,
            inputs=inputs,
            outputs=outputs,
        )

    @grpc_errors
    async def ModelInfer(self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext):
        return await self.infer(request, context.time_remaining())

    async def ModelStreamInfer(
        self, request_iterator: AsyncIterator[pb.ModelInferRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        # As the native stream: requests run concurrently (so they batch) up to the window, answered in
        # arrival order; a failed request is answered with its error_message and the stream goes on.
        async for reply in ordered_answers(
            request_iterator, lambda request: self._answer_streamed(request, context), self._stream_window
        ):
            yield reply

    async def _answer_streamed(
        self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelStreamInferResponse:
        try:
            response = await self.infer(request, context.time_remaining())
        except Exception as exc:
            _, message = status_of(exc, request.model_name)
            return pb.ModelStreamInferResponse(
                error_message=message,
                infer_response=pb.ModelInferResponse(
                    model_name=request.model_name, model_version=request.model_version, id=request.id
                ),
            )
        return pb.ModelStreamInferResponse(infer_response=response)

    async def infer(
        self, request: pb.ModelInferRequest, time_remaining: float | None, protocol: str = PROTOCOL
    ) -> pb.ModelInferResponse:
        """One inference; the HTTP API (KServe V2 REST) calls this too, with its own metrics label."""
        version, label = parse_version(request.model_version)
        spec, _ = self._plane.metadata(request.model_name, version, label)
        payload = _decode_input(request, spec)
        outputs = _requested_outputs(request, spec)
        top_k = max([k for _, k in outputs if k], default=1)
        result = await self._plane.classify(
            ClassifyCall(
                request.model_name,
                version,
                payload,
                top_k,
                time_remaining=time_remaining,
                protocol=protocol,
                version_label=label,
            )
        )
        return _response(request, result, outputs)


def parse_version(text: str) -> tuple[int | None, str]:
    """(version, "") for a number, (None, label) for a version label's name, (None, "") when empty."""
    if not text:
        return None, ""
    if LABEL_PATTERN.fullmatch(text) and text != LATEST:
        return None, text
    try:
        version = int(text)
    except ValueError:
        version = 0
    if version < 1:
        raise InvalidInputError(
            f"model version {text!r} is neither a positive integer nor a version label ({LABEL_FORM}); "
            "leave it empty for the newest"
        )
    return version, ""


def _decode_input(request: pb.ModelInferRequest, spec: ModelSpec):
    expected = expected_input(spec)
    if len(request.inputs) != 1:
        sent = ", ".join(repr(tensor.name) for tensor in request.inputs) or "none"
        raise InvalidInputError(
            f"model {spec.name!r} takes exactly one input, {expected}; "
            f"the request sent {len(request.inputs)} ({sent})"
        )
    tensor = request.inputs[0]
    if tensor.name != spec.input.name:
        raise InvalidInputError(f"unknown input {tensor.name!r}: model {spec.name!r} takes {expected}")
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InvalidInputError(
            f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} input(s); "
            "send one per input"
        )
    if raw and tensor.HasField("contents"):
        raise InvalidInputError(
            f"input {tensor.name!r} has both raw_input_contents and typed contents; send one"
        )
    shape = tuple(int(d) for d in tensor.shape)
    count = element_count(shape, tensor.name)
    datatype = tensor.datatype
    if spec.input.kind == "image":
        if datatype not in IMAGE_DTYPES:
            raise InvalidInputError(
                f"input {tensor.name!r} has datatype {datatype!r}; model {spec.name!r} takes {expected}"
            )
        dtype = IMAGE_DTYPES[datatype]
        if raw:
            data = raw[0]
            if len(data) != count * dtype.itemsize:
                raise InvalidInputError(
                    f"input {tensor.name!r}: raw contents have {len(data)} bytes but {datatype} with shape "
                    f"{list(shape)} needs {count * dtype.itemsize} ({dtype.itemsize} per element)"
                )
            array = np.frombuffer(data, dtype=dtype)
        elif datatype == "UINT8":
            values = tensor.contents.uint_contents
            check_count(len(values), shape, tensor.name, "uint_contents")
            array = np.asarray(values, dtype=np.int64)
            if array.size and (array.min() < 0 or array.max() > 255):
                raise InvalidInputError(f"input {tensor.name!r}: UINT8 values must lie in 0-255")
            array = array.astype(np.uint8)
        else:
            values = tensor.contents.fp32_contents
            check_count(len(values), shape, tensor.name, "fp32_contents")
            array = np.asarray(values, dtype=np.float32)
        return payload_for(spec, array.reshape(shape), shape, tensor.name, expected)
    if datatype != TEXT_DTYPE:
        raise InvalidInputError(
            f"input {tensor.name!r} has datatype {datatype!r}; model {spec.name!r} takes {expected}"
        )
    texts = deserialize_bytes(raw[0], tensor.name) if raw else list(tensor.contents.bytes_contents)
    check_count(len(texts), shape, tensor.name, "strings")
    return payload_for(spec, texts, shape, tensor.name, expected)


def deserialize_bytes(data: bytes, name: str) -> list[bytes]:
    """Triton's raw BYTES layout: each element is a little-endian uint32 length, then that many bytes."""
    values, offset = [], 0
    while offset < len(data):
        if offset + LENGTH_PREFIX.size > len(data):
            raise InvalidInputError(f"input {name!r}: raw BYTES contents end inside a 4-byte length prefix")
        (length,) = LENGTH_PREFIX.unpack_from(data, offset)
        offset += LENGTH_PREFIX.size
        if offset + length > len(data):
            raise InvalidInputError(
                f"input {name!r}: raw BYTES element {len(values)} declares {length} bytes but only "
                f"{len(data) - offset} remain (each element is a little-endian uint32 length, then the bytes)"
            )
        values.append(bytes(data[offset : offset + length]))
        offset += length
    return values


def serialize_bytes(values: list[bytes]) -> bytes:
    return b"".join(LENGTH_PREFIX.pack(len(value)) + value for value in values)


def _requested_outputs(request: pb.ModelInferRequest, spec: ModelSpec) -> list[tuple[str, int]]:
    """(name, k) per requested output; k > 0 asks for the classification extension's top-k strings."""
    if not request.outputs:
        return [(spec.output_name, 0)]
    outputs = []
    for output in request.outputs:
        if output.name != spec.output_name:
            raise InvalidInputError(
                f"unknown output {output.name!r}: model {spec.name!r} has one output, {spec.output_name!r} "
                f"(FP32 probabilities with shape [-1, {len(spec.labels)}])"
            )
        k = 0
        if CLASSIFICATION in output.parameters:
            parameter = output.parameters[CLASSIFICATION]
            choice = parameter.WhichOneof("parameter_choice")
            k = int(getattr(parameter, choice)) if choice in ("int64_param", "uint64_param") else -1
            if k < 1:
                raise InvalidInputError(
                    "output parameter 'classification' must be a positive integer (how many classes); "
                    f"got {parameter}"
                )
        outputs.append((output.name, k))
    return outputs


def _response(
    request: pb.ModelInferRequest, result: Classification, outputs: list[tuple[str, int]]
) -> pb.ModelInferResponse:
    spec = result.spec
    rows = result.probabilities.shape[0]
    response = pb.ModelInferResponse(model_name=spec.name, model_version=str(spec.version), id=request.id)
    for name, k in outputs:
        if k == 0:
            probabilities = np.ascontiguousarray(result.probabilities, dtype="<f4")
            response.outputs.add(name=name, datatype="FP32", shape=list(probabilities.shape))
            response.raw_output_contents.append(probabilities.tobytes())
            continue
        top = min(k, len(spec.labels))
        strings = [
            f"{score:f}:{index}:{spec.labels[index]}".encode()
            for indices, scores in zip(
                result.top_indices[:, :top].tolist(), result.top_scores[:, :top].tolist(), strict=True
            )
            for index, score in zip(indices, scores, strict=True)
        ]
        response.outputs.add(name=name, datatype=TEXT_DTYPE, shape=[rows, top])
        response.raw_output_contents.append(serialize_bytes(strings))
    return response
