"""KServe V2 / Open Inference Protocol REST (the API Triton and MLServer serve on HTTP), incl. the binary
tensor data extension and the classification extension, as ``tritonclient.http`` speaks them.

A request becomes the gRPC protocol's ``ModelInferRequest`` (JSON ``data`` or binary bytes as raw
contents) and goes through the very servicer the gRPC API uses, so both validate, batch and answer
alike; only the envelope is translated here. Binary extension: with ``Inference-Header-Content-Length:
N`` the first N bytes are the JSON header and each input with ``parameters.binary_data_size`` takes its
bytes from the rest, in order; outputs asked for with ``binary_data: true`` (or, when none are listed,
the request's ``binary_data_output: true``) come back the same way.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from classify_client.wire.proto.inference import grpc_predict_v2_pb2 as pb
from classify_server import __version__
from classify_server.errors import ClassifyServerError, InvalidInputError
from classify_server.http.errors import error_response
from classify_server.http.guard import HttpContext, parse_json
from classify_server.http.openapi import ERRORS, json_request_body
from classify_server.protocols import kserve
from classify_server.protocols.tensors import element_count
from classify_server.serving.registry import READY

PROTOCOL = "http-v2"
HEADER_LENGTH = "inference-header-content-length"
TAG = "KServe V2"
TAG_DESCRIPTION = (
    "Open Inference Protocol REST: health, metadata and infer with JSON or binary tensors "
    "(tritonclient.http works unmodified). Not-ready probes answer 400, as the protocol specifies."
)
WHAT = 'an inference request: {"inputs": [{"name", "shape", "datatype", "data"}]}'


class RequestInput(BaseModel):
    name: str = Field(description="The model's input name: 'images' or 'texts' (see the model's metadata)")
    shape: list[int] = Field(description="Tensor shape, e.g. [2, 28, 28] for two images")
    datatype: str = Field(description="UINT8 or FP32 (in [0, 1]) for images, BYTES for texts")
    parameters: dict[str, Any] = Field(
        default_factory=dict, description="binary_data_size: byte count of this input in the binary part"
    )
    data: list[Any] | None = Field(
        None, description="Row-major values, flat or nested; omitted when the binary part carries them"
    )


class RequestOutput(BaseModel):
    name: str = Field(description="The model's output name (see the model's metadata)")
    parameters: dict[str, Any] = Field(
        default_factory=dict,
        description="binary_data: answer in the binary part; classification: k to get the top-k classes "
        "as BYTES 'score:index:label', best first",
    )


class InferenceRequest(BaseModel):
    id: str = Field("", description="Echoed in the response")
    parameters: dict[str, Any] = Field(
        default_factory=dict,
        description="binary_data_output: all outputs in the binary part; timeout: microseconds to wait",
    )
    inputs: list[RequestInput] = Field(description="Exactly one input tensor")
    outputs: list[RequestOutput] = Field(
        default_factory=list, description="Outputs wanted; default: the probabilities"
    )


class MetadataTensor(BaseModel):
    name: str = Field(description="Tensor name")
    datatype: str = Field(description="KServe V2 datatype")
    shape: list[int] = Field(description="Shape, -1 for the batch dimension")


class ModelMetadata(BaseModel):
    name: str = Field(description="Model name")
    versions: list[str] = Field(description="Versions being served")
    platform: str = Field(description="Always tensorflow_savedmodel")
    inputs: list[MetadataTensor] = Field(description="The one input tensor")
    outputs: list[MetadataTensor] = Field(description="The one output tensor (probabilities)")


class ServerMetadata(BaseModel):
    name: str = Field(description="Server name")
    version: str = Field(description="Server version")
    extensions: list[str] = Field(description="Protocol extensions supported")


class ResponseOutput(BaseModel):
    name: str = Field(description="Output name")
    shape: list[int] = Field(description="Output shape")
    datatype: str = Field(description="FP32 probabilities, or BYTES for the classification extension")
    parameters: dict[str, Any] = Field(default_factory=dict, description="binary_data_size when binary")
    data: list[Any] | None = Field(None, description="Row-major values (absent when binary)")


class InferenceResponse(BaseModel):
    model_name: str = Field(description="Model that answered")
    model_version: str = Field(description="Version that answered")
    id: str = Field("", description="The request's id")
    outputs: list[ResponseOutput] = Field(description="One tensor per requested output")


REQUEST_MODELS: list[type[BaseModel]] = [InferenceRequest]


def router(context: HttpContext) -> APIRouter:
    routes = APIRouter(tags=[TAG], responses=ERRORS)
    plane = context.data_plane
    servicer = kserve.InferenceServicer(plane, stream_window=1)

    @routes.get("/v2", response_model=ServerMetadata, summary="Server metadata")
    async def server_metadata(request: Request) -> Response:
        answer = {"name": kserve.SERVER_NAME, "version": __version__, "extensions": list(kserve.EXTENSIONS)}
        return await context.serve(request, "", lambda _: _json(answer), read_body=False)

    @routes.get("/v2/health/live", summary="Liveness: 200 while the process serves")
    async def live() -> Response:
        return JSONResponse({"live": True})

    @routes.get("/v2/health/ready", summary="Readiness: 200 once a model is ready, 400 before")
    async def ready() -> Response:
        is_ready = not context.draining and any(s.state == READY for s in plane.model_states())
        return JSONResponse({"ready": is_ready}, status_code=200 if is_ready else 400)

    async def model_ready(request: Request, name: str, version: str) -> Response:
        try:
            plane.metadata(name, *kserve.parse_version(version))
        except ClassifyServerError as exc:
            if not isinstance(exc, InvalidInputError) and not context.draining:
                return JSONResponse({"name": name, "ready": False, "error": str(exc)}, status_code=400)
            return error_response(exc, name)
        return JSONResponse({"name": name, "ready": not context.draining})

    async def model_metadata(request: Request, name: str, version: str) -> Response:
        def answer(_: bytes) -> Any:
            spec, versions = plane.metadata(name, *kserve.parse_version(version))
            kind = ("UINT8", [-1, 28, 28]) if spec.input.kind == "image" else (kserve.TEXT_DTYPE, [-1])
            return _json(
                {
                    "name": spec.name,
                    "versions": [str(v) for v in versions],
                    "platform": kserve.PLATFORM,
                    "inputs": [{"name": spec.input.name, "datatype": kind[0], "shape": kind[1]}],
                    "outputs": [
                        {"name": spec.output_name, "datatype": "FP32", "shape": [-1, len(spec.labels)]}
                    ],
                }
            )

        return await context.serve(request, name, answer, read_body=False)

    async def infer(request: Request, name: str, version: str) -> Response:
        async def answer(body: bytes) -> Response:
            header_length = request.headers.get(HEADER_LENGTH)
            message, binary = _split(body, header_length)
            parsed = parse_json(message, InferenceRequest, WHAT)
            grpc_request, binary_outputs = _grpc_request(parsed, binary, name, version)
            reply = await servicer.infer(grpc_request, _time_remaining(parsed.parameters), PROTOCOL)
            return _http_response(reply, binary_outputs)

        return await context.serve(request, name, answer)

    infer_doc = {
        "response_model": InferenceResponse,
        "openapi_extra": json_request_body(
            InferenceRequest,
            "JSON tensors; or, with the header Inference-Header-Content-Length, that many bytes of JSON "
            "followed by the binary tensor data",
            **{"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        ),
    }
    for prefix in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
        _add(routes, "GET", prefix, model_metadata, "Model metadata", response_model=ModelMetadata)
        _add(routes, "GET", prefix + "/ready", model_ready, "Model readiness: 200 when ready, else 400")
        _add(routes, "POST", prefix + "/infer", infer, "Inference", **infer_doc)
    return routes


def _add(routes: APIRouter, method: str, path: str, handler: Any, summary: str, **extra: Any) -> None:
    """Register ``handler(request, name, version)`` at a path with or without /versions/{version}."""
    if "{version}" in path:

        async def endpoint(request: Request, name: str, version: str) -> Response:
            return await handler(request, name, version)
    else:

        async def endpoint(request: Request, name: str) -> Response:  # type: ignore[misc]
            return await handler(request, name, "")

    routes.add_api_route(path, endpoint, methods=[method], summary=summary, **extra)


def _json(content: Any) -> JSONResponse:
    return JSONResponse(content)


def _split(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """(JSON header, binary part) of a body; without the header the whole body is JSON."""
    if header_length is None:
        return body, b""
    if not header_length.isdigit() or int(header_length) > len(body):
        raise InvalidInputError(
            f"Inference-Header-Content-Length is {header_length!r} but the body has {len(body)} bytes; "
            "it must be the byte length of the JSON part at the start of the body"
        )
    length = int(header_length)
    return body[:length], body[length:]


def _time_remaining(parameters: dict[str, Any]) -> float | None:
    """Triton's ``timeout`` request parameter (microseconds) as the call's deadline."""
    timeout = parameters.get("timeout")
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 0:
        raise InvalidInputError(
            f"parameter 'timeout' must be a whole number of microseconds, not {timeout!r}"
        )
    return timeout / 1e6


def _grpc_request(
    request: InferenceRequest, binary: bytes, name: str, version: str
) -> tuple[pb.ModelInferRequest, set[str]]:
    """The gRPC protocol's request for the same inference, and the outputs wanted in binary."""
    grpc_request = pb.ModelInferRequest(model_name=name, model_version=version, id=request.id)
    offset = 0
    for tensor in request.inputs:
        grpc_request.inputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
        size = tensor.parameters.get("binary_data_size")
        if size is not None:
            if tensor.data is not None:
                raise InvalidInputError(
                    f"input {tensor.name!r} has both 'data' and binary_data_size; send one"
                )
            if isinstance(size, bool) or not isinstance(size, int) or size < 0 or offset + size > len(binary):
                raise InvalidInputError(
                    f"input {tensor.name!r}: binary_data_size {size!r} does not fit the "
                    f"{len(binary) - offset} "
                    "bytes left after the JSON header (Inference-Header-Content-Length)"
                )
            grpc_request.raw_input_contents.append(binary[offset : offset + size])
            offset += size
        else:
            grpc_request.raw_input_contents.append(_json_tensor_bytes(tensor))
    if offset != len(binary):
        raise InvalidInputError(
            f"{len(binary) - offset} bytes after the JSON header belong to no input; "
            "each binary input must give its binary_data_size"
        )
    all_binary = request.parameters.get("binary_data_output") is True
    binary_outputs: set[str] = set()
    for output in request.outputs:
        wanted = grpc_request.outputs.add(name=output.name)
        k = output.parameters.get("classification")
        if k is not None:
            wanted.parameters[kserve.CLASSIFICATION].CopyFrom(_parameter(k))
        if output.parameters.get("binary_data") is True:
            binary_outputs.add(output.name)
    if not request.outputs and all_binary:
        binary_outputs.add("*")
    return grpc_request, binary_outputs


def _parameter(value: Any) -> pb.InferParameter:
    if isinstance(value, bool):
        return pb.InferParameter(bool_param=value)
    if isinstance(value, int):
        return pb.InferParameter(int64_param=value)
    return pb.InferParameter(string_param=str(value))


def _json_tensor_bytes(tensor: RequestInput) -> bytes:
    """JSON ``data`` as the raw bytes the gRPC protocol carries, checked against the tensor's shape."""
    if tensor.data is None:
        raise InvalidInputError(f"input {tensor.name!r} has no 'data' and no binary_data_size")
    count = element_count(tuple(tensor.shape), tensor.name)
    if tensor.datatype == kserve.TEXT_DTYPE:
        values = _flatten_strings(tensor.data, tensor.name)
        _check_count(len(values), count, tensor)
        return kserve.serialize_bytes(values)
    dtype = kserve.IMAGE_DTYPES.get(tensor.datatype)
    if dtype is None:
        return b""  # the servicer refuses the datatype, naming the ones the model takes
    try:
        array = np.asarray(tensor.data)
    except ValueError as exc:  # ragged, or nested deeper than numpy's 64 dimensions
        raise InvalidInputError(
            f"input {tensor.name!r}: 'data' is not a rectangular nested list of numbers ({exc}); "
            f"give {tensor.shape} values row-major, flat or nested"
        ) from None
    _check_count(array.size, count, tensor)
    if array.size and array.dtype.kind not in ("i", "u", "f"):
        raise InvalidInputError(f"input {tensor.name!r}: {tensor.datatype} data must be numbers")
    if tensor.datatype == "UINT8":
        if array.size and (array.dtype.kind == "f" or array.min() < 0 or array.max() > 255):
            raise InvalidInputError(f"input {tensor.name!r}: UINT8 values must be whole numbers 0-255")
        return array.astype(np.uint8).tobytes()
    return array.astype("<f4").tobytes()


def _check_count(actual: int, expected: int, tensor: RequestInput) -> None:
    if actual != expected:
        raise InvalidInputError(
            f"input {tensor.name!r}: 'data' has {actual} values but shape {tensor.shape} needs {expected}"
        )


def _flatten_strings(data: list[Any], name: str) -> list[bytes]:
    flat: list[bytes] = []
    pending = [iter(data)]
    while pending:  # iterative: a deeply nested list must not exhaust the stack
        item = next(pending[-1], None)
        if item is None:
            pending.pop()
        elif isinstance(item, list):
            pending.append(iter(item))
        elif isinstance(item, str):
            flat.append(item.encode("utf-8"))
        else:
            raise InvalidInputError(f"input {name!r}: BYTES data must be strings, got {type(item).__name__}")
    return flat


def _http_response(reply: pb.ModelInferResponse, binary_outputs: set[str]) -> Response:
    outputs: list[dict[str, Any]] = []
    binary_parts: list[bytes] = []
    for tensor, raw in zip(reply.outputs, reply.raw_output_contents, strict=True):
        output: dict[str, Any] = {
            "name": tensor.name,
            "datatype": tensor.datatype,
            "shape": list(tensor.shape),
        }
        if tensor.name in binary_outputs or "*" in binary_outputs:
            output["parameters"] = {"binary_data_size": len(raw)}
            binary_parts.append(raw)
        elif tensor.datatype == kserve.TEXT_DTYPE:
            output["data"] = [v.decode("utf-8") for v in kserve.deserialize_bytes(raw, tensor.name)]
        else:
            output["data"] = np.frombuffer(raw, dtype="<f4").tolist()
        outputs.append(output)
    content = {"model_name": reply.model_name, "model_version": reply.model_version, "outputs": outputs}
    if reply.id:
        content["id"] = reply.id
    if not binary_parts:
        return JSONResponse(content)
    header = JSONResponse(content).body
    return Response(
        bytes(header) + b"".join(binary_parts),
        media_type="application/octet-stream",
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
