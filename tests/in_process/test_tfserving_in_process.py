"""TF Serving's PredictionService of the in-process server over a fake model, via tensorflow-serving-api.

The fake models carry the trained models' names and model.json, so the messages read as they do there.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import numpy as np
import pytest
import tensorflow as tf
from fake_serving import InProcessServer
from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2, prediction_service_pb2_grpc

IMAGE_MODEL = "mnist-cnn"


@pytest.fixture(scope="module")
def stub(fake_server: InProcessServer) -> Iterator[prediction_service_pb2_grpc.PredictionServiceStub]:
    with grpc.insecure_channel(fake_server.target) as channel:
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(7).integers(0, 256, size=(4, 28, 28), dtype=np.uint8)


def predict_request(model: str, name: str, array, **spec) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    for key, value in spec.items():
        if key == "version":
            request.model_spec.version.value = value
        else:
            setattr(request.model_spec, key, value)
    request.inputs[name].CopyFrom(tf.make_tensor_proto(array))
    return request


def test_model_spec_version_label_and_signature_are_honoured(stub, images) -> None:
    for spec in ({"version": 1}, {"version_label": "latest"}, {"signature_name": "serving_default"}):
        response = stub.Predict(predict_request(IMAGE_MODEL, "images", images, **spec), timeout=30)
        assert response.model_spec.version.value == 1
    cases = [
        ({"version": 7}, grpc.StatusCode.NOT_FOUND, "has no version 7"),
        ({"version_label": "canary"}, grpc.StatusCode.NOT_FOUND, "no version label 'canary'"),
        (
            {"signature_name": "classify"},
            grpc.StatusCode.INVALID_ARGUMENT,
            "its signature is 'serving_default'",
        ),
    ]
    for spec, code, message in cases:
        with pytest.raises(grpc.RpcError) as raised:
            stub.Predict(predict_request(IMAGE_MODEL, "images", images, **spec), timeout=30)
        assert raised.value.code() == code
        assert message in raised.value.details()


@pytest.mark.parametrize(
    ("name", "array", "message"),
    [
        ("pixels", np.zeros((1, 28, 28), np.uint8), "takes exactly one input, inputs['images']"),
        (
            "images",
            np.zeros((1, 28, 28), np.int32),
            "dtype DT_INT32; model 'mnist-cnn' takes inputs['images']",
        ),
        ("images", np.zeros((1, 28, 27), np.uint8), "shape [1, 28, 27]"),
    ],
)
def test_predict_errors_say_what_is_expected(stub, name, array, message) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        stub.Predict(predict_request(IMAGE_MODEL, name, array), timeout=30)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in raised.value.details()


def test_get_model_metadata_returns_the_signature_def(stub) -> None:
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = IMAGE_MODEL
    response = stub.GetModelMetadata(request, timeout=30)
    assert response.model_spec.version.value == 1
    signatures = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signatures)
    signature = signatures.signature_def["serving_default"]
    assert signature.inputs["images"].dtype == tf.uint8.as_datatype_enum
    assert [d.size for d in signature.inputs["images"].tensor_shape.dim] == [-1, 28, 28]
    assert [d.size for d in signature.outputs["probabilities"].tensor_shape.dim] == [-1, 10]
    request.metadata_field[:] = ["graph"]
    with pytest.raises(grpc.RpcError) as raised:
        stub.GetModelMetadata(request, timeout=30)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "the only field is 'signature_def'" in raised.value.details()
