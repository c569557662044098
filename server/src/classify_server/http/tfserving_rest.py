"""TF Serving's REST API (``/v1/models/...``): status, metadata, ``:predict`` and ``:classify``.

Requests become the gRPC API's TfsPredictRequest / ClassificationRequest and go through the same servicer,
so version labels, signature names and input checks behave as over gRPC. JSON numbers become pixels:
whole numbers as DT_UINT8 (0-255), any decimal as DT_FLOAT in [0, 1]; strings (or ``{"b64": ...}``) are
texts. ``:classify`` examples carry ``image`` (784 floats in [0, 1], or 784 raw bytes as b64) or ``text``.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import numpy as np
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from google.protobuf import json_format, wrappers_pb2
from pydantic import BaseModel, Field
from tensorflow.core.example import example_pb2, feature_pb2
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

from classify_client.wire.proto.tensorflow_serving.apis import classification_pb2, model_pb2, predict_pb2
from classify_server.errors import InvalidInputError, ModelNotFoundError, NotImplementedByServerError
from classify_server.http.guard import HttpContext, parse_json
from classify_server.http.openapi import ERRORS, json_request_body
from classify_server.protocols import tfserving
from classify_server.serving.registry import FAILED, LOADING, READY, UNLOADING

PROTOCOL = "http-tfs"
TAG = "TF Serving"
TAG_DESCRIPTION = "TensorFlow Serving's REST API: model status, metadata, :predict and :classify."
STATES = {READY: "AVAILABLE", LOADING: "LOADING", UNLOADING: "UNLOADING", FAILED: "END"}
PREFIXES = ("/v1/models/{name}", "/v1/models/{name}/versions/{version}", "/v1/models/{name}/labels/{label}")


class TfsPredictRequest(BaseModel):
    signature_name: str = Field("", description="Signature to use; default: the model's serving_default")
    instances: Any = Field(
        None,
        description="Row format: a list with one value per item (an image as 28 lists of 28 "
        "numbers, a text as a string) or one object {input name: value} per item",
    )
    inputs: Any = Field(None, description="Columnar format: the input tensor itself, or {input name: tensor}")


class TfsClassifyRequest(BaseModel):
    signature_name: str = Field("", description="Signature to use; default: the model's serving_default")
    context: dict[str, Any] = Field(default_factory=dict, description="Features shared by every example")
    examples: list[dict[str, Any]] = Field(
        description='One object per item: {"image": [784 floats in [0, 1]] or {"b64": 784 raw bytes}} '
        'or {"text": "a review"}'
    )


REQUEST_MODELS: list[type[BaseModel]] = [TfsPredictRequest, TfsClassifyRequest]


def router(context: HttpContext) -> APIRouter:
    routes = APIRouter(tags=[TAG], responses=ERRORS)
    plane = context.data_plane
    servicer = tfserving.PredictionServicer(plane)

    async def status(request: Request, name: str, choice: dict[str, str]) -> Response:
        def answer(_: bytes) -> Response:
            states = {s.name: s for s in plane.model_states()}
            if name not in states:
                plane.metadata(name, None)  # NOT_FOUND with the usual message
            state = states[name]
            wanted = _version_of(servicer, name, choice) if choice else None
            versions = [v for v in state.versions if wanted is None or v.version == wanted]
            if not versions:
                raise ModelNotFoundError(f"model {name!r} has no version {wanted}")
            return JSONResponse({"model_version_status": [_version_status(v) for v in reversed(versions)]})

        return await context.serve(request, name, answer, read_body=False)

    async def metadata(request: Request, name: str, choice: dict[str, str]) -> Response:
        def answer(_: bytes) -> Response:
            spec, _ = servicer._resolve(_model_spec(name, choice, ""))  # the gRPC rules
            signature = json_format.MessageToDict(
                tfserving.signature_def(spec), preserving_proto_field_name=True
            )
            return JSONResponse(
                {
                    "model_spec": {"name": spec.name, "signature_name": "", "version": str(spec.version)},
                    "metadata": {"signature_def": {"signature_def": {spec.signature: signature}}},
                }
            )

        return await context.serve(request, name, answer, read_body=False)

    async def predict(request: Request, name: str, choice: dict[str, str]) -> Response:
        async def answer(body: bytes) -> Response:
            parsed = parse_json(body, TfsPredictRequest, 'a predict request: {"instances": [...]}')
            spec, _ = servicer._resolve(_model_spec(name, choice, parsed.signature_name))
            rows = parsed.instances is not None
            if rows == (parsed.inputs is not None):
                raise InvalidInputError(
                    "send either 'instances' (row format) or 'inputs' (columnar), not both"
                )
            values = (
                _column(parsed.instances, spec.input.name) if rows else _named(parsed.inputs, spec.input.name)
            )
            grpc_request = predict_pb2.PredictRequest(
                model_spec=_model_spec(name, choice, parsed.signature_name)
            )
            grpc_request.inputs[spec.input.name].CopyFrom(_tensor(values, spec.input.kind, spec.input.name))
            reply = await servicer.predict(grpc_request, None, PROTOCOL)
            output = reply.outputs[spec.output_name]
            shape = [d.size for d in output.tensor_shape.dim]
            probabilities = np.frombuffer(output.tensor_content, dtype="<f4").reshape(shape).tolist()
            return JSONResponse({"predictions" if rows else "outputs": probabilities})

        return await context.serve(request, name, answer)

    async def classify(request: Request, name: str, choice: dict[str, str]) -> Response:
        async def answer(body: bytes) -> Response:
            parsed = parse_json(body, TfsClassifyRequest, 'a classify request: {"examples": [...]}')
            grpc_request = classification_pb2.ClassificationRequest(
                model_spec=_model_spec(name, choice, parsed.signature_name)
            )
            examples = grpc_request.input.example_list_with_context
            examples.context.CopyFrom(_example(parsed.context, "context"))
            for position, item in enumerate(parsed.examples):
                examples.examples.append(_example(item, f"example {position}"))
            reply = await servicer.classify(grpc_request, None, PROTOCOL)
            result = [[[c.label, c.score] for c in row.classes] for row in reply.result.classifications]
            return JSONResponse({"result": result})

        return await context.serve(request, name, answer)

    async def regress(request: Request, name: str, choice: dict[str, str]) -> Response:
        def answer(_: bytes) -> Response:
            raise NotImplementedByServerError(
                f"model {name!r} is a classifier: use :predict or :classify (regress is not served)"
            )

        return await context.serve(request, name, answer, read_body=False)

    for prefix in PREFIXES:
        _add(routes, "GET", prefix, status, "Model status")
        _add(routes, "GET", prefix + "/metadata", metadata, "Model metadata (signature_def)")
        body = json_request_body(TfsPredictRequest, "Row (instances) or columnar (inputs) tensors")
        _add(routes, "POST", prefix + ":predict", predict, "Predict: probabilities", openapi_extra=body)
        body = json_request_body(TfsClassifyRequest, "tf.Example features per item")
        _add(
            routes,
            "POST",
            prefix + ":classify",
            classify,
            "Classify: every class, best first",
            openapi_extra=body,
        )
        _add(routes, "POST", prefix + ":regress", regress, "Regress: not served (501)")
    return routes


def _add(routes: APIRouter, method: str, path: str, handler: Any, summary: str, **extra: Any) -> None:
    """Register ``handler(request, name, choice)`` where choice is {} or {"version"|"label": value}."""
    if "{version}" in path:

        async def endpoint(request: Request, name: str, version: str) -> Response:
            return await handler(request, name, {"version": version})
    elif "{label}" in path:

        async def endpoint(request: Request, name: str, label: str) -> Response:  # type: ignore[misc]
            return await handler(request, name, {"label": label})
    else:

        async def endpoint(request: Request, name: str) -> Response:  # type: ignore[misc]
            return await handler(request, name, {})

    routes.add_api_route(path, endpoint, methods=[method], summary=summary, **extra)


def _model_spec(name: str, choice: dict[str, str], signature_name: str) -> model_pb2.ModelSpec:
    spec = model_pb2.ModelSpec(name=name, signature_name=signature_name)
    if "version" in choice:
        text = choice["version"]
        if not text.isdigit() or int(text) < 1:
            raise InvalidInputError(f"model version {text!r} is not a positive integer")
        spec.version.CopyFrom(wrappers_pb2.Int64Value(value=int(text)))
    elif "label" in choice:
        spec.version_label = choice["label"]
    return spec


def _version_of(servicer: tfserving.PredictionServicer, name: str, choice: dict[str, str]) -> int:
    """The version a /versions/{v} or /labels/{label} path names ("latest": the newest ready one)."""
    spec = _model_spec(name, choice, "")
    if spec.WhichOneof("version_choice") == "version":
        return spec.version.value
    return servicer._resolve(spec)[0].version  # the gRPC API's label rules


def _version_status(version: Any) -> dict[str, Any]:
    failed = version.state == FAILED
    return {
        "version": str(version.version),
        "state": STATES.get(version.state, "UNKNOWN"),
        "status": {"error_code": "UNKNOWN" if failed else "OK", "error_message": version.reason},
    }


def _column(instances: Any, input_name: str) -> list[Any]:
    """Row format: the list of items, unwrapping {input name: value} objects."""
    if not isinstance(instances, list):
        raise InvalidInputError("'instances' must be a list, one entry per item")
    if instances and isinstance(instances[0], dict) and "b64" not in instances[0]:
        column = []
        for position, item in enumerate(instances):
            if not isinstance(item, dict) or set(item) != {input_name}:
                keys = sorted(item) if isinstance(item, dict) else type(item).__name__
                raise InvalidInputError(
                    f"instance {position} has {keys}; this model has one input, {input_name!r}"
                )
            column.append(item[input_name])
        return column
    return instances


def _named(inputs: Any, input_name: str) -> Any:
    """Columnar format: the tensor itself or {input name: tensor}."""
    if isinstance(inputs, dict) and "b64" not in inputs:
        if set(inputs) != {input_name}:
            raise InvalidInputError(
                f"'inputs' has {sorted(inputs)}; this model has one input, {input_name!r}"
            )
        return inputs[input_name]
    return inputs


def _tensor(values: Any, kind: str, name: str) -> tensor_pb2.TensorProto:
    if kind == "text":
        items = values if isinstance(values, list) else [values]
        texts = [_bytes(item, f"input {name!r}") for item in items]
        return tensor_pb2.TensorProto(
            dtype=types_pb2.DT_STRING, tensor_shape=_shape([len(texts)]), string_val=texts
        )
    try:
        array = np.asarray(values)
    except ValueError as exc:  # ragged, or nested deeper than numpy's 64 dimensions
        raise InvalidInputError(
            f"input {name!r} is not a rectangular nested list of numbers ({exc}); send items of 28 rows of 28"
        ) from None
    if array.dtype.kind in ("i", "u"):
        if array.size and (array.min() < 0 or array.max() > 255):
            raise InvalidInputError(f"input {name!r}: whole-number pixels must lie in 0-255")
        dtype, content = types_pb2.DT_UINT8, array.astype(np.uint8).tobytes()
    elif array.dtype.kind == "f":
        dtype, content = types_pb2.DT_FLOAT, array.astype("<f4").tobytes()
    else:
        raise InvalidInputError(
            f"input {name!r}: images are numbers (whole 0-255, or decimals in [0, 1]), "
            f"not {array.dtype.kind!r} values"
        )
    return tensor_pb2.TensorProto(dtype=dtype, tensor_shape=_shape(list(array.shape)), tensor_content=content)


def _shape(dims: list[int]) -> tensor_shape_pb2.TensorShapeProto:
    return tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in dims]
    )


def _bytes(value: Any, where: str) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, dict) and set(value) == {"b64"} and isinstance(value["b64"], str):
        try:
            return base64.b64decode(value["b64"], validate=True)
        except binascii.Error as exc:
            raise InvalidInputError(f"{where}: 'b64' is not valid base64 ({exc})") from None
    raise InvalidInputError(f'{where}: expected a string or {{"b64": ...}}, got {type(value).__name__}')


def _example(features: dict[str, Any], where: str) -> example_pb2.Example:
    example = example_pb2.Example()
    for key, value in features.items():
        items = value if isinstance(value, list) else [value]
        feature = example.features.feature[key]
        if items and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in items):
            feature.CopyFrom(feature_pb2.Feature(float_list=feature_pb2.FloatList(value=items)))
        else:
            data = [_bytes(v, f"{where}, feature {key!r}") for v in items]
            feature.CopyFrom(feature_pb2.Feature(bytes_list=feature_pb2.BytesList(value=data)))
    return example
