"""TF Serving's ``tensorflow.serving.PredictionService`` over the shared data plane.

Predict (TensorProto in and out, keyed by the signature's input and output names), Classify (tf.Example
rows with an ``image`` feature — 784 raw uint8 bytes or 784 floats in [0, 1] — or a ``text`` bytes
feature; every class with its score, best first) and GetModelMetadata (the ``signature_def`` map).
ModelSpec's name, version, version_label ("latest", a version number, or a label of the model) and
signature_name are honoured, and every response carries the model spec that answered.

The TensorFlow message types (TensorProto, Example, SignatureDef) are TensorFlow's own generated modules:
the server has TensorFlow anyway, and this way only one definition of them exists in the process.
Regress and MultiInference are not served (UNIMPLEMENTED): these models are classifiers.
"""

from __future__ import annotations

import grpc
import numpy as np
from google.protobuf import any_pb2, wrappers_pb2
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow.core.protobuf import meta_graph_pb2

from classify_client.wire.proto.tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    model_pb2,
    predict_pb2,
    prediction_service_pb2,
    prediction_service_pb2_grpc,
)
from classify_server.errors import InvalidInputError, grpc_errors
from classify_server.protocols.tensors import check_count, element_count, payload_for
from classify_server.serving.data_plane import ClassifyCall, DataPlane
from classify_server.serving.repository import ModelSpec
from classify_server.serving.validation import IMAGE_HEIGHT, IMAGE_WIDTH, Payload

SERVICE_NAME = prediction_service_pb2.DESCRIPTOR.services_by_name["PredictionService"].full_name
PROTOCOL = "tf-serving"  # the metrics label of requests that came this way
SIGNATURE_DEF_FIELD = "signature_def"
LATEST_LABEL = "latest"
PREDICT_METHOD = "tensorflow/serving/predict"
IMAGE_FEATURE, TEXT_FEATURE = "image", "text"
PIXELS = IMAGE_HEIGHT * IMAGE_WIDTH
DTYPE_NAMES = {
    types_pb2.DT_UINT8: "DT_UINT8",
    types_pb2.DT_FLOAT: "DT_FLOAT",
    types_pb2.DT_STRING: "DT_STRING",
}


def expected_input(spec: ModelSpec) -> str:
    if spec.input.kind == "image":
        return (
            f"inputs[{spec.input.name!r}]: DT_UINT8 (0-255) or DT_FLOAT (in [0, 1]) with shape [-1, 28, 28] "
            "or [-1, 28, 28, 1]"
        )
    return f"inputs[{spec.input.name!r}]: DT_STRING (UTF-8 text) with shape [-1]"


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, data_plane: DataPlane) -> None:
        self._plane = data_plane

    @grpc_errors
    async def Predict(self, request: predict_pb2.PredictRequest, context: grpc.aio.ServicerContext):
        return await self.predict(request, context.time_remaining())

    async def predict(
        self, request: predict_pb2.PredictRequest, time_remaining: float | None, protocol: str = PROTOCOL
    ) -> predict_pb2.PredictResponse:
        """One Predict; the HTTP API (TF Serving REST) calls this too, with its own metrics label."""
        spec, version = self._resolve(request.model_spec)
        expected = expected_input(spec)
        unknown = sorted(set(request.inputs) - {spec.input.name})
        if unknown or spec.input.name not in request.inputs:
            sent = ", ".join(repr(name) for name in sorted(request.inputs)) or "none"
            raise InvalidInputError(
                f"model {spec.name!r} takes exactly one input, {expected}; the request sent {sent}"
            )
        for name in request.output_filter:
            if name != spec.output_name:
                raise InvalidInputError(
                    f"output_filter names {name!r}; model {spec.name!r} has one output, {spec.output_name!r}"
                )
        payload = _payload_from_tensor(request.inputs[spec.input.name], spec.input.name, spec, expected)
        result = await self._plane.classify(
            ClassifyCall(spec.name, version, payload, 1, time_remaining=time_remaining, protocol=protocol)
        )
        probabilities = np.ascontiguousarray(result.probabilities, dtype="<f4")
        response = predict_pb2.PredictResponse(model_spec=_answered_spec(result.spec))
        response.outputs[spec.output_name].CopyFrom(
            tensor_pb2.TensorProto(
                dtype=types_pb2.DT_FLOAT,
                tensor_shape=_shape(probabilities.shape),
                tensor_content=probabilities.tobytes(),
            )
        )
        return response

    @grpc_errors
    async def Classify(
        self, request: classification_pb2.ClassificationRequest, context: grpc.aio.ServicerContext
    ):
        return await self.classify(request, context.time_remaining())

    async def classify(
        self,
        request: classification_pb2.ClassificationRequest,
        time_remaining: float | None,
        protocol: str = PROTOCOL,
    ) -> classification_pb2.ClassificationResponse:
        """One Classify; the HTTP API (TF Serving REST) calls this too, with its own metrics label."""
        spec, version = self._resolve(request.model_spec)
        payload = _payload_from_examples(request.input, spec)
        classes = len(spec.labels)
        result = await self._plane.classify(
            ClassifyCall(
                spec.name,
                version,
                payload,
                classes,
                time_remaining=time_remaining,
                protocol=protocol,
            )
        )
        response = classification_pb2.ClassificationResponse(model_spec=_answered_spec(result.spec))
        labels = result.spec.labels
        for indices, scores in zip(result.top_indices.tolist(), result.top_scores.tolist(), strict=True):
            row = response.result.classifications.add()
            for index, score in zip(indices, scores, strict=True):
                row.classes.add(label=labels[index], score=score)
        return response

    @grpc_errors
    async def GetModelMetadata(
        self, request: get_model_metadata_pb2.GetModelMetadataRequest, context: grpc.aio.ServicerContext
    ):
        spec, _ = self._resolve(request.model_spec)
        fields = list(request.metadata_field)
        if not fields:
            raise InvalidInputError(f"metadata_field is empty; ask for {SIGNATURE_DEF_FIELD!r}")
        unknown = [name for name in fields if name != SIGNATURE_DEF_FIELD]
        if unknown:
            raise InvalidInputError(
                f"metadata_field {unknown[0]!r} is not supported; the only field is {SIGNATURE_DEF_FIELD!r}"
            )
        signatures = get_model_metadata_pb2.SignatureDefMap()
        signatures.signature_def[spec.signature].CopyFrom(signature_def(spec))
        packed = any_pb2.Any()
        packed.Pack(signatures)
        response = get_model_metadata_pb2.GetModelMetadataResponse(model_spec=_answered_spec(spec))
        response.metadata[SIGNATURE_DEF_FIELD].CopyFrom(packed)
        return response

    def _resolve(self, model_spec: model_pb2.ModelSpec) -> tuple[ModelSpec, int | None]:
        """The model version a ModelSpec names (None: the newest), checking its signature name."""
        choice = model_spec.WhichOneof("version_choice")
        version: int | None = None
        if choice == "version":
            version = model_spec.version.value
        elif choice == "version_label":
            version = self._version_for_label(model_spec.name, model_spec.version_label)
        spec, _ = self._plane.metadata(model_spec.name, version)
        if model_spec.signature_name not in ("", spec.signature):
            raise InvalidInputError(
                f"model {spec.name!r} has no signature {model_spec.signature_name!r}; "
                f"its signature is {spec.signature!r} (or leave signature_name empty)"
            )
        return spec, version

    def _version_for_label(self, name: str, label: str) -> int | None:
        if label == LATEST_LABEL:
            return None
        if label.isdigit():
            return int(label)
        # A label set in --model-version-labels or by SetVersionLabel, pinned to its version for this call.
        spec, _ = self._plane.metadata(name, None, label)
        return spec.version


def _answered_spec(spec: ModelSpec) -> model_pb2.ModelSpec:
    return model_pb2.ModelSpec(
        name=spec.name, version=wrappers_pb2.Int64Value(value=spec.version), signature_name=spec.signature
    )


def _shape(dims: tuple[int, ...] | list[int]) -> tensor_shape_pb2.TensorShapeProto:
    return tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in dims]
    )


def _tensor_info(name: str, dtype: int, dims: list[int]) -> meta_graph_pb2.TensorInfo:
    return meta_graph_pb2.TensorInfo(name=name, dtype=dtype, tensor_shape=_shape(dims))


def signature_def(spec: ModelSpec) -> meta_graph_pb2.SignatureDef:
    signature = meta_graph_pb2.SignatureDef(method_name=PREDICT_METHOD)
    if spec.input.kind == "image":
        signature.inputs[spec.input.name].CopyFrom(
            _tensor_info(
                f"{spec.signature}_{spec.input.name}:0", types_pb2.DT_UINT8, [-1, IMAGE_HEIGHT, IMAGE_WIDTH]
            )
        )
    else:
        signature.inputs[spec.input.name].CopyFrom(
            _tensor_info(f"{spec.signature}_{spec.input.name}:0", types_pb2.DT_STRING, [-1])
        )
    signature.outputs[spec.output_name].CopyFrom(
        _tensor_info("StatefulPartitionedCall:0", types_pb2.DT_FLOAT, [-1, len(spec.labels)])
    )
    return signature


def _payload_from_tensor(
    tensor: tensor_pb2.TensorProto, name: str, spec: ModelSpec, expected: str
) -> Payload:
    if tensor.tensor_shape.unknown_rank:
        raise InvalidInputError(
            f"input {name!r} has unknown rank; give its shape, the model expects {expected}"
        )
    shape = tuple(int(dim.size) for dim in tensor.tensor_shape.dim)
    count = element_count(shape, name)
    dtype = DTYPE_NAMES.get(
        tensor.dtype,
        types_pb2.DataType.Name(tensor.dtype)
        if tensor.dtype in types_pb2.DataType.values()
        else str(tensor.dtype),
    )
    if spec.input.kind == "image":
        if tensor.dtype == types_pb2.DT_UINT8:
            if tensor.tensor_content:
                _check_content(tensor.tensor_content, count, 1, name, shape=shape, dtype=dtype)
                array = np.frombuffer(tensor.tensor_content, dtype=np.uint8)
            else:
                check_count(len(tensor.int_val), shape, name, "int_val values")
                array = np.asarray(tensor.int_val, dtype=np.int64)
                if array.size and (array.min() < 0 or array.max() > 255):
                    raise InvalidInputError(f"input {name!r}: DT_UINT8 values must lie in 0-255")
                array = array.astype(np.uint8)
        elif tensor.dtype == types_pb2.DT_FLOAT:
            if tensor.tensor_content:
                _check_content(tensor.tensor_content, count, 4, name, shape=shape, dtype=dtype)
                array = np.frombuffer(tensor.tensor_content, dtype="<f4")
            else:
                check_count(len(tensor.float_val), shape, name, "float_val values")
                array = np.asarray(tensor.float_val, dtype=np.float32)
        else:
            raise InvalidInputError(f"input {name!r} has dtype {dtype}; model {spec.name!r} takes {expected}")
        return payload_for(spec, array.reshape(shape), shape, name, expected)
    if tensor.dtype != types_pb2.DT_STRING:
        raise InvalidInputError(f"input {name!r} has dtype {dtype}; model {spec.name!r} takes {expected}")
    texts = list(tensor.string_val)
    check_count(len(texts), shape, name, "string_val values")
    return payload_for(spec, texts, shape, name, expected)


def _check_content(
    content: bytes, count: int, itemsize: int, name: str, *, shape: tuple[int, ...], dtype: str
) -> None:
    if len(content) != count * itemsize:
        raise InvalidInputError(
            f"input {name!r}: tensor_content has {len(content)} bytes but {dtype} with shape {list(shape)} "
            f"needs {count * itemsize}"
        )


def _payload_from_examples(model_input, spec: ModelSpec) -> Payload:  # noqa: PLR0912 one branch a case
    kind = model_input.WhichOneof("kind")
    if kind == "example_list":
        examples = list(model_input.example_list.examples)
        context = None
    elif kind == "example_list_with_context":
        examples = list(model_input.example_list_with_context.examples)
        context = model_input.example_list_with_context.context
    else:
        raise InvalidInputError(
            "input carries no examples; send input.example_list with one tf.Example per item"
        )
    feature = IMAGE_FEATURE if spec.input.kind == "image" else TEXT_FEATURE
    expected = (
        f"a feature {IMAGE_FEATURE!r}: {PIXELS} uint8 pixels as one bytes value, or {PIXELS} floats in [0, 1]"
        if feature == IMAGE_FEATURE
        else f"a feature {TEXT_FEATURE!r}: one UTF-8 bytes value"
    )
    images: list[np.ndarray] = []
    texts: list[bytes] = []
    for position, example in enumerate(examples):
        features = dict(context.features.feature) if context is not None else {}
        features.update(example.features.feature)
        if feature not in features:
            present = ", ".join(repr(name) for name in sorted(features)) or "none"
            raise InvalidInputError(
                f"example {position} has no feature {feature!r} (it has {present}); "
                f"model {spec.name!r} expects {expected}"
            )
        value = features[feature]
        which = value.WhichOneof("kind")
        if feature == TEXT_FEATURE:
            if which != "bytes_list" or len(value.bytes_list.value) != 1:
                raise InvalidInputError(f"example {position}: feature 'text' must be {expected}")
            texts.append(value.bytes_list.value[0])
        elif which == "bytes_list" and len(value.bytes_list.value) == 1:
            data = value.bytes_list.value[0]
            if len(data) != PIXELS:
                raise InvalidInputError(
                    f"example {position}: feature 'image' has {len(data)} bytes; expected {expected}"
                )
            images.append(np.frombuffer(data, dtype=np.uint8))
        elif which == "float_list" and len(value.float_list.value) == PIXELS:
            images.append(np.asarray(value.float_list.value, dtype=np.float32))
        else:
            raise InvalidInputError(f"example {position}: feature 'image' must be {expected}")
    if feature == TEXT_FEATURE:
        return payload_for(spec, texts, (len(texts),), TEXT_FEATURE, expected)
    if not images:
        raise InvalidInputError(f"empty batch: send at least one tf.Example to model {spec.name!r}")
    if len({array.dtype for array in images}) > 1:
        raise InvalidInputError(
            "mixed image encodings: send every 'image' feature as bytes, or every one as floats"
        )
    batch = np.stack(images).reshape(-1, IMAGE_HEIGHT, IMAGE_WIDTH)
    return payload_for(spec, batch, batch.shape, IMAGE_FEATURE, expected)
