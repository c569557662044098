"""KServe V2 REST on the HTTP port, driven by the real, unmodified tritonclient.http (sync and aio).

Answers are compared with the native gRPC API's for the same inputs: one data plane behind both.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import numpy as np
import pytest
import tritonclient.http as triton
import tritonclient.http.aio as triton_aio
from tritonclient.utils import InferenceServerException

from classify_client import Client

IMAGE_MODEL, TEXT_MODEL = "mnist-cnn", "imdb-lstm"
TEXTS = ["A quiet, moving film with wonderful acting.", "Dull, predictable and far too long."]


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(16).integers(0, 256, size=(5, 28, 28), dtype=np.uint8)


@pytest.fixture(scope="module")
def http_address(server) -> str:
    return urlsplit(server.http_url()).netloc  # tritonclient takes host:port


@pytest.fixture(scope="module")
def client(http_address):
    triton_client = triton.InferenceServerClient(http_address)
    yield triton_client
    triton_client.close()


def native_probabilities(target: str, model: str, **inputs) -> np.ndarray:
    with Client(target, timeout=30) as native:
        return native.classify(model, return_probabilities=True, **inputs).probabilities


def infer_input(name: str, array: np.ndarray, datatype: str, binary: bool = True) -> triton.InferInput:
    tensor = triton.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array, binary_data=binary)
    return tensor


def test_health_and_metadata(client) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready(IMAGE_MODEL)
    assert client.is_model_ready(TEXT_MODEL, model_version="1")
    assert not client.is_model_ready("no-such-model")
    assert not client.is_model_ready(IMAGE_MODEL, model_version="99")
    server = client.get_server_metadata()
    assert server["name"] == "classify" and "classification" in server["extensions"]
    model = client.get_model_metadata(IMAGE_MODEL)
    assert model["versions"] == ["1"]
    assert model["inputs"] == [{"name": "images", "datatype": "UINT8", "shape": [-1, 28, 28]}]
    assert model["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]}]
    assert client.get_model_metadata(TEXT_MODEL, model_version="1")["inputs"][0]["datatype"] == "BYTES"


@pytest.mark.parametrize("binary", [True, False], ids=["binary-extension", "json-tensors"])
def test_image_inference_matches_grpc(client, server, images, binary) -> None:
    reply = client.infer(
        IMAGE_MODEL,
        [infer_input("images", images, "UINT8", binary)],
        outputs=[triton.InferRequestedOutput("probabilities", binary_data=binary)],
        request_id="r-16",
    )
    probabilities = reply.as_numpy("probabilities")
    assert probabilities.shape == (5, 10)
    np.testing.assert_allclose(
        probabilities, native_probabilities(server.target, IMAGE_MODEL, images=images), atol=1e-6
    )
    assert reply.get_response()["id"] == "r-16"
    assert reply.get_response()["model_version"] == "1"


def test_float_images_and_unlisted_outputs_come_back_binary(client, server, images) -> None:
    pixels = images.astype(np.float32) / 255.0
    reply = client.infer(IMAGE_MODEL, [infer_input("images", pixels, "FP32")], model_version="1")
    expected = native_probabilities(server.target, IMAGE_MODEL, images=images)
    np.testing.assert_allclose(reply.as_numpy("probabilities"), expected, atol=1e-6)
    assert reply.get_output("probabilities")["parameters"]["binary_data_size"] == 5 * 10 * 4


@pytest.mark.parametrize("binary", [True, False], ids=["binary-extension", "json-tensors"])
def test_texts_and_the_classification_extension(client, server, binary) -> None:
    texts = np.array([text.encode() for text in TEXTS], dtype=np.object_)
    reply = client.infer(
        TEXT_MODEL,
        [infer_input("texts", texts, "BYTES", binary)],
        outputs=[triton.InferRequestedOutput("probabilities", binary_data=binary, class_count=2)],
    )
    top = reply.as_numpy("probabilities")
    assert top.shape == (2, 2)
    expected = native_probabilities(server.target, TEXT_MODEL, texts=TEXTS)
    for row, classes in zip(expected, top, strict=True):
        best = classes[0].decode() if isinstance(classes[0], bytes) else classes[0]  # JSON data: str
        score, index, label = best.split(":")
        assert int(index) == int(np.argmax(row))
        assert label == ("positive" if int(index) == 1 else "negative")
        assert float(score) == pytest.approx(float(row.max()), abs=1e-5)


def test_errors_carry_the_grpc_message_and_status(client, images) -> None:
    with pytest.raises(InferenceServerException) as unknown:
        client.infer("no-such-model", [infer_input("images", images, "UINT8")])
    assert unknown.value.status() == "404"
    assert "model 'no-such-model' not found" in unknown.value.message()
    with pytest.raises(InferenceServerException) as wrong_input:
        client.infer(IMAGE_MODEL, [infer_input("pixels", images, "UINT8")])
    assert wrong_input.value.status() == "400"
    assert "unknown input 'pixels'" in wrong_input.value.message()
    with pytest.raises(InferenceServerException) as wrong_dtype:
        client.infer(IMAGE_MODEL, [infer_input("images", images.astype(np.int32), "INT32")])
    assert wrong_dtype.value.status() == "400" and "UINT8" in wrong_dtype.value.message()


def test_aio_client_concurrent_requests(http_address, server, images) -> None:
    async def run() -> list[np.ndarray]:
        async with triton_aio.InferenceServerClient(http_address) as aio_client:
            assert await aio_client.is_server_ready()
            assert (await aio_client.get_model_metadata(IMAGE_MODEL))["name"] == IMAGE_MODEL
            replies = []
            for image in images:
                one = triton_aio.InferInput("images", [1, 28, 28], "UINT8")
                one.set_data_from_numpy(image[None])
                replies.append(aio_client.infer(IMAGE_MODEL, [one]))
            return [reply.as_numpy("probabilities")[0] for reply in await asyncio.gather(*replies)]

    rows = asyncio.run(run())
    np.testing.assert_allclose(
        np.stack(rows), native_probabilities(server.target, IMAGE_MODEL, images=images), atol=1e-6
    )
