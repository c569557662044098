"""Hypothesis strategies for TF Serving's PredictionService requests (TensorFlow's own message types).

Kept apart from the other strategies because importing TensorFlow's protos imports TensorFlow (seconds).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence

from fuzz_messages import FLOATS, SPECIAL_FLOATS, image_shape, names, raw_bytes
from hypothesis import strategies as st
from tensorflow.core.example import example_pb2, feature_pb2
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

from classify_client.wire.proto.tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    inference_pb2,
    model_pb2,
    predict_pb2,
    regression_pb2,
)

DTYPES = [types_pb2.DT_UINT8, types_pb2.DT_FLOAT, types_pb2.DT_STRING, types_pb2.DT_INT64, types_pb2.DT_HALF]


@st.composite
def model_spec(draw: st.DrawFn, real: Sequence[str]) -> model_pb2.ModelSpec:
    spec = model_pb2.ModelSpec(
        name=draw(names(real)), signature_name=draw(st.sampled_from(["", "serving_default", "predict", "x"]))
    )
    choice = draw(st.sampled_from(["none", "version", "label"]))
    if choice == "version":
        spec.version.value = draw(st.one_of(st.integers(-2, 3), st.integers(-(2**63), 2**63 - 1)))
    elif choice == "label":
        spec.version_label = draw(st.sampled_from(["latest", "1", "stable", "", "00", "9" * 30]))
    return spec


@st.composite
def tensor(draw: st.DrawFn) -> tensor_pb2.TensorProto:
    dtype = draw(st.one_of(st.sampled_from(DTYPES), st.integers(-5, 200)))
    proto = tensor_pb2.TensorProto(dtype=dtype)
    if draw(st.integers(0, 9)) == 0:
        proto.tensor_shape.unknown_rank = True
    shape = draw(st.one_of(image_shape(), st.lists(st.integers(-2, 5), max_size=2)))
    proto.tensor_shape.CopyFrom(
        tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in shape])
    )
    count = math.prod(shape) if shape and all(d >= 0 for d in shape) else -1
    length = count if 0 <= count <= 3 * 784 and draw(st.booleans()) else draw(st.integers(0, 8))
    mode = draw(st.sampled_from(["content", "values", "none"]))
    if mode == "content":
        itemsize = 4 if dtype == types_pb2.DT_FLOAT else 1
        if dtype == types_pb2.DT_FLOAT and draw(st.booleans()):
            values = draw(st.lists(st.one_of(FLOATS, SPECIAL_FLOATS), min_size=length, max_size=length))
            proto.tensor_content = struct.pack(f"<{length}f", *values)
        else:
            proto.tensor_content = bytes(length * itemsize + draw(st.sampled_from([0, 0, 1, -1])) % 3)
    elif mode == "values":
        if dtype == types_pb2.DT_STRING:
            proto.string_val.extend(draw(st.lists(raw_bytes(), min_size=length, max_size=length)))
        elif dtype == types_pb2.DT_FLOAT:
            proto.float_val.extend(
                draw(st.lists(st.one_of(FLOATS, SPECIAL_FLOATS), min_size=length, max_size=length))
            )
        else:
            proto.int_val.extend(
                draw(st.lists(st.integers(-(2**31), 2**31 - 1), min_size=length, max_size=length))
            )
    return proto


@st.composite
def predict_request(draw: st.DrawFn, real: Sequence[str]) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest(model_spec=draw(model_spec(real)))
    for name in draw(st.lists(st.sampled_from(["images", "texts", "x", ""]), max_size=2, unique=True)):
        request.inputs[name].CopyFrom(draw(tensor()))
    request.output_filter.extend(draw(st.lists(st.sampled_from(["probabilities", "scores"]), max_size=2)))
    return request


@st.composite
def feature(draw: st.DrawFn) -> feature_pb2.Feature:
    kind = draw(st.sampled_from(["image_bytes", "image_floats", "bytes", "floats", "ints", "empty"]))
    if kind == "image_bytes":
        size = draw(st.sampled_from([784, 784, 783, 785, 0]))
        return feature_pb2.Feature(bytes_list=feature_pb2.BytesList(value=[bytes(size)]))
    if kind == "image_floats":
        size = draw(st.sampled_from([784, 784, 10]))
        value = draw(st.one_of(FLOATS, SPECIAL_FLOATS))
        return feature_pb2.Feature(float_list=feature_pb2.FloatList(value=[value] * size))
    if kind == "bytes":
        return feature_pb2.Feature(
            bytes_list=feature_pb2.BytesList(value=draw(st.lists(raw_bytes(), max_size=3)))
        )
    if kind == "floats":
        return feature_pb2.Feature(float_list=feature_pb2.FloatList(value=draw(st.lists(FLOATS, max_size=3))))
    if kind == "ints":
        return feature_pb2.Feature(
            int64_list=feature_pb2.Int64List(value=draw(st.lists(st.integers(-9, 9), max_size=3)))
        )
    return feature_pb2.Feature()


@st.composite
def example(draw: st.DrawFn) -> example_pb2.Example:
    message = example_pb2.Example()
    for name in draw(st.lists(st.sampled_from(["image", "text", "other"]), max_size=2, unique=True)):
        message.features.feature[name].CopyFrom(draw(feature()))
    return message


@st.composite
def tf_input(draw: st.DrawFn):
    from classify_client.wire.proto.tensorflow_serving.apis import input_pb2

    model_input = input_pb2.Input()
    kind = draw(st.sampled_from(["list", "context", "none"]))
    examples = draw(st.lists(example(), max_size=4))
    if kind == "list":
        model_input.example_list.examples.extend(examples)
    elif kind == "context":
        model_input.example_list_with_context.examples.extend(examples)
        model_input.example_list_with_context.context.CopyFrom(draw(example()))
    return model_input


@st.composite
def classification_request(draw: st.DrawFn, real: Sequence[str]):
    return classification_pb2.ClassificationRequest(model_spec=draw(model_spec(real)), input=draw(tf_input()))


@st.composite
def regression_request(draw: st.DrawFn, real: Sequence[str]):
    return regression_pb2.RegressionRequest(model_spec=draw(model_spec(real)), input=draw(tf_input()))


@st.composite
def multi_inference_request(draw: st.DrawFn, real: Sequence[str]):
    request = inference_pb2.MultiInferenceRequest(input=draw(tf_input()))
    request.tasks.add(model_spec=draw(model_spec(real)), method_name="tensorflow/serving/classify")
    return request


@st.composite
def metadata_request(draw: st.DrawFn, real: Sequence[str]):
    fields = draw(st.lists(st.sampled_from(["signature_def", "other", ""]), max_size=2))
    return get_model_metadata_pb2.GetModelMetadataRequest(
        model_spec=draw(model_spec(real)), metadata_field=fields
    )
