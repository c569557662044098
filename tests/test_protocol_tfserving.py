"""TF Serving's PredictionService on the same port, driven by tensorflow-serving-api's own stubs.

The stubs import TensorFlow (fine: tensorflow-cpu is installed for the tests). This process never imports
our generated ``tensorflow_serving`` modules; they are descriptor-identical anyway (see
test_protocol_vendored.py), so even importing both would not clash. Checks that need no trained model
(model spec selection, errors, metadata) are in tests/in_process/test_tfserving_in_process.py.
"""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    classification_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from classify_client import Client

IMAGE_MODEL, TEXT_MODEL = "mnist-cnn", "imdb-lstm"
TEXTS = ["A quiet, moving film with wonderful acting.", "Dull, predictable and far too long."]


@pytest.fixture(scope="module")
def stub(server):
    with grpc.insecure_channel(server.target) as channel:
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(7).integers(0, 256, size=(4, 28, 28), dtype=np.uint8)


def native(target: str, model: str, **inputs):
    with Client(target, timeout=30) as client:
        return client.classify(model, return_probabilities=True, top_k=10, **inputs)


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


def test_predict_uint8_float_and_text_equal_native_bit_for_bit(server, stub, images) -> None:
    expected = native(server.target, IMAGE_MODEL, images=images).probabilities
    response = stub.Predict(predict_request(IMAGE_MODEL, "images", images), timeout=30)
    assert np.array_equal(tf.make_ndarray(response.outputs["probabilities"]), expected)
    assert response.model_spec.name == IMAGE_MODEL
    assert response.model_spec.version.value == 1
    assert response.model_spec.signature_name == "serving_default"
    floats = (images.astype(np.float32) / 255.0)[..., None]
    response = stub.Predict(predict_request(IMAGE_MODEL, "images", floats), timeout=30)
    assert np.array_equal(tf.make_ndarray(response.outputs["probabilities"]), expected)
    text_expected = native(server.target, TEXT_MODEL, texts=TEXTS).probabilities
    response = stub.Predict(predict_request(TEXT_MODEL, "texts", np.array(TEXTS, dtype=object)), timeout=30)
    assert np.array_equal(tf.make_ndarray(response.outputs["probabilities"]), text_expected)


def test_classify_with_tf_examples(server, stub, images) -> None:
    expected = native(server.target, IMAGE_MODEL, images=images)
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = IMAGE_MODEL
    for row, image in enumerate(images):
        example = request.input.example_list.examples.add()
        feature = example.features.feature["image"]
        if row % 2:
            feature.float_list.value.extend((image.astype(np.float32) / 255.0).ravel().tolist())
        else:
            feature.bytes_list.value.append(image.tobytes())
    with pytest.raises(grpc.RpcError) as raised:
        stub.Classify(request, timeout=30)
    assert "mixed image encodings" in raised.value.details()
    del request.input.example_list.examples[1::2]
    response = stub.Classify(request, timeout=30)
    assert response.model_spec.version.value == 1
    for classifications, prediction in zip(
        response.result.classifications, expected.predictions[::2], strict=True
    ):
        assert [c.label for c in classifications.classes] == [c.label for c in prediction.classes]
        assert [c.score for c in classifications.classes] == pytest.approx(
            [c.score for c in prediction.classes]
        )
    text_request = classification_pb2.ClassificationRequest()
    text_request.model_spec.name = TEXT_MODEL
    for text in TEXTS:
        text_request.input.example_list.examples.add().features.feature["text"].bytes_list.value.append(
            text.encode()
        )
    text_expected = native(server.target, TEXT_MODEL, texts=TEXTS)
    response = stub.Classify(text_request, timeout=30)
    assert [c.classes[0].label for c in response.result.classifications] == text_expected.labels
    missing = classification_pb2.ClassificationRequest()
    missing.model_spec.name = TEXT_MODEL
    missing.input.example_list.examples.add().features.feature["review"].bytes_list.value.append(b"fine")
    with pytest.raises(grpc.RpcError) as raised:
        stub.Classify(missing, timeout=30)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "has no feature 'text' (it has 'review')" in raised.value.details()
