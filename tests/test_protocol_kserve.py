"""KServe V2 / Open Inference Protocol on the same port, driven by the real tritonclient.

tritonclient defines the ``inference.*`` protobuf messages itself, so this process never imports
``classify_client.cli.v2_protocol`` or our generated ``inference`` module (see proto/VENDORED.md); the
``classify score --protocol v2`` test runs the CLI in its own process.
"""

from __future__ import annotations

import asyncio
import queue
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
import tritonclient.grpc.aio as triton_aio
from conftest import health_status, run_cli
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from classify_client import Client

IMAGE_MODEL, TEXT_MODEL = "mnist-cnn", "imdb-lstm"
TEXTS = ["A quiet, moving film with wonderful acting.", "Dull, predictable and far too long."]


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(5).integers(0, 256, size=(6, 28, 28), dtype=np.uint8)


@pytest.fixture(scope="module")
def triton_client(server):
    client = triton.InferenceServerClient(server.target)
    yield client
    client.close()


def native_probabilities(target: str, model: str, **inputs) -> np.ndarray:
    with Client(target, timeout=30) as client:
        return client.classify(model, return_probabilities=True, **inputs).probabilities


def infer_input(name: str, array: np.ndarray, datatype: str) -> triton.InferInput:
    tensor = triton.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    return tensor


def test_liveness_readiness_and_server_metadata(triton_client) -> None:
    assert triton_client.is_server_live()
    assert triton_client.is_server_ready()
    assert triton_client.is_model_ready(IMAGE_MODEL)
    assert triton_client.is_model_ready(TEXT_MODEL, model_version="1")
    assert not triton_client.is_model_ready("no-such-model")
    assert not triton_client.is_model_ready(IMAGE_MODEL, model_version="99")
    metadata = triton_client.get_server_metadata(as_json=True)
    assert metadata["name"] == "classify"
    assert "classification" in metadata["extensions"]


def test_model_metadata_describes_what_infer_accepts(triton_client) -> None:
    image = triton_client.get_model_metadata(IMAGE_MODEL, as_json=True)
    assert image["versions"] == ["1"]
    assert image["inputs"] == [{"name": "images", "datatype": "UINT8", "shape": ["-1", "28", "28"]}]
    assert image["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": ["-1", "10"]}]
    text = triton_client.get_model_metadata(TEXT_MODEL, as_json=True)
    assert text["inputs"] == [{"name": "texts", "datatype": "BYTES", "shape": ["-1"]}]
    assert text["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": ["-1", "2"]}]


def test_uint8_images_equal_the_native_answer_bit_for_bit(server, triton_client, images) -> None:
    expected = native_probabilities(server.target, IMAGE_MODEL, images=images)
    result = triton_client.infer(IMAGE_MODEL, [infer_input("images", images, "UINT8")], request_id="req-1")
    assert result.get_response().id == "req-1"
    assert result.get_response().model_version == "1"
    probabilities = result.as_numpy("probabilities")
    assert probabilities.dtype == np.float32
    assert np.array_equal(probabilities, expected)
    with_channel = triton_client.infer(IMAGE_MODEL, [infer_input("images", images[..., None], "UINT8")])
    assert np.array_equal(with_channel.as_numpy("probabilities"), expected)


def test_fp32_images_in_unit_range_equal_the_native_answer(server, triton_client, images) -> None:
    floats = images.astype(np.float32) / 255.0
    expected = native_probabilities(server.target, IMAGE_MODEL, images=floats)
    result = triton_client.infer(IMAGE_MODEL, [infer_input("images", floats, "FP32")])
    assert np.array_equal(result.as_numpy("probabilities"), expected)


def test_texts_as_bytes(server, triton_client) -> None:
    expected = native_probabilities(server.target, TEXT_MODEL, texts=TEXTS)
    texts = np.array([text.encode() for text in TEXTS], dtype=np.object_)
    result = triton_client.infer(TEXT_MODEL, [infer_input("texts", texts, "BYTES")])
    assert np.array_equal(result.as_numpy("probabilities"), expected)


def test_classification_extension_returns_top_k_as_score_index_label(server, triton_client) -> None:
    texts = np.array([text.encode() for text in TEXTS], dtype=np.object_)
    with Client(server.target) as client:
        native = client.classify(TEXT_MODEL, texts=TEXTS, top_k=2)
    result = triton_client.infer(
        TEXT_MODEL,
        [infer_input("texts", texts, "BYTES")],
        outputs=[triton.InferRequestedOutput("probabilities", class_count=2)],
    )
    strings = result.as_numpy("probabilities")
    assert strings.shape == (2, 2)
    for row, prediction in zip(strings, native.predictions, strict=True):
        parsed = [entry.decode().split(":") for entry in row]
        assert [(int(index), label) for _, index, label in parsed] == [
            (c.index, c.label) for c in prediction.classes
        ]
        assert [float(score) for score, _, _ in parsed] == pytest.approx(
            [c.score for c in prediction.classes], abs=1e-6
        )


def test_typed_contents_are_accepted_like_raw_bytes(server, images) -> None:
    expected = native_probabilities(server.target, IMAGE_MODEL, images=images)
    request = service_pb2.ModelInferRequest(model_name=IMAGE_MODEL)
    tensor = request.inputs.add(name="images", datatype="UINT8", shape=list(images.shape))
    tensor.contents.uint_contents.extend(images.ravel().tolist())
    with grpc.insecure_channel(server.target) as channel:
        response = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)
    assert response.outputs[0].name == "probabilities"
    probabilities = np.frombuffer(response.raw_output_contents[0], dtype="<f4").reshape(-1, 10)
    assert np.array_equal(probabilities, expected)


def test_async_client(server, images) -> None:
    expected = native_probabilities(server.target, IMAGE_MODEL, images=images)

    async def run() -> list[np.ndarray]:
        client = triton_aio.InferenceServerClient(server.target)
        try:
            assert await client.is_server_ready()
            calls = [
                client.infer(IMAGE_MODEL, [infer_input("images", images[i : i + 2], "UINT8")])
                for i in range(0, len(images), 2)
            ]
            return [result.as_numpy("probabilities") for result in await asyncio.gather(*calls)]
        finally:
            await client.close()

    # Concurrent calls are batched together differently from the one native call, and the kernels' float
    # summation order depends on the batch size: equal to rounding, not bit for bit (that is checked
    # above with identical batches).
    np.testing.assert_allclose(np.concatenate(asyncio.run(run())), expected, rtol=1e-5, atol=1e-6)


def test_stream_answers_every_request_and_reports_errors_in_band(server, images) -> None:
    expected = native_probabilities(server.target, IMAGE_MODEL, images=images)
    answers: queue.Queue = queue.Queue()
    client = triton.InferenceServerClient(server.target)
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        for row in range(len(images)):
            client.async_stream_infer(
                IMAGE_MODEL, [infer_input("images", images[row : row + 1], "UINT8")], request_id=str(row)
            )
        client.async_stream_infer(IMAGE_MODEL, [infer_input("pixels", images[:1], "UINT8")], request_id="bad")
        received = [answers.get(timeout=60) for _ in range(len(images) + 1)]
    finally:
        client.stop_stream()
        client.close()
    results = {result.get_response().id: result for result, error in received if error is None}
    errors = [error for result, error in received if error is not None]
    assert sorted(results) == sorted(str(row) for row in range(len(images)))
    for row in range(len(images)):
        np.testing.assert_allclose(  # batched differently from the native call: see test_async_client
            results[str(row)].as_numpy("probabilities"), expected[row : row + 1], rtol=1e-5, atol=1e-6
        )
    assert len(errors) == 1 and "unknown input 'pixels'" in str(errors[0])


@pytest.mark.parametrize(
    ("name", "array", "datatype", "message"),
    [
        (
            "pixels",
            np.zeros((1, 28, 28), np.uint8),
            "UINT8",
            "unknown input 'pixels': model 'mnist-cnn' takes 'images'",
        ),
        (
            "images",
            np.zeros((1, 28, 28), np.int32),
            "INT32",
            "datatype 'INT32'; model 'mnist-cnn' takes 'images': UINT8",
        ),
        ("images", np.zeros((1, 27, 28), np.uint8), "UINT8", "shape [1, 27, 28]; the model expects 'images'"),
        ("images", np.full((1, 28, 28), 2.0, np.float32), "FP32", "float pixels must lie in [0, 1]"),
    ],
)
def test_bad_inputs_are_invalid_argument_saying_what_is_expected(
    triton_client, name, array, datatype, message
) -> None:
    with pytest.raises(InferenceServerException) as raised:
        triton_client.infer(IMAGE_MODEL, [infer_input(name, array, datatype)])
    assert raised.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert message in raised.value.message()


def test_bad_byte_length_output_name_and_model(server, triton_client) -> None:
    request = service_pb2.ModelInferRequest(model_name=IMAGE_MODEL)
    request.inputs.add(name="images", datatype="UINT8", shape=[2, 28, 28])
    request.raw_input_contents.append(bytes(784))
    with grpc.insecure_channel(server.target) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as raised:
            stub.ModelInfer(request, timeout=30)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "raw contents have 784 bytes but UINT8 with shape [2, 28, 28] needs 1568" in raised.value.details()
    images = infer_input("images", np.zeros((1, 28, 28), np.uint8), "UINT8")
    with pytest.raises(InferenceServerException) as raised:
        triton_client.infer(IMAGE_MODEL, [images], outputs=[triton.InferRequestedOutput("scores")])
    assert raised.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "unknown output 'scores'" in raised.value.message() and "'probabilities'" in raised.value.message()
    with pytest.raises(InferenceServerException) as raised:
        triton_client.infer("no-such-model", [images])
    assert raised.value.status() == "StatusCode.NOT_FOUND"


def test_health_and_reflection_list_all_three_protocols(server) -> None:
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    services = [
        "classify.v1.Classifier",
        "inference.GRPCInferenceService",
        "tensorflow.serving.PredictionService",
    ]
    for service in services:
        assert health_status(server.target, service) == "SERVING"
    with grpc.insecure_channel(server.target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        response = next(iter(stub.ServerReflectionInfo(iter([request]), timeout=10)))
    listed = {service.name for service in response.list_services_response.service}
    assert set(services) <= listed


def test_classify_score_over_v2_writes_the_same_rows_as_native(server, tmp_path: Path, images) -> None:
    source = tmp_path / "digits.npy"
    np.save(source, np.random.default_rng(9).integers(0, 256, size=(300, 28, 28), dtype=np.uint8))
    outputs = {}
    for protocol in ("native", "v2"):
        outputs[protocol] = tmp_path / f"{protocol}.csv"
        run_cli(
            "classify",
            "score",
            "--target",
            server.target,
            "--model",
            IMAGE_MODEL,
            "--input",
            source,
            "--output",
            outputs[protocol],
            "--top-k",
            "3",
            "--batch-size",
            "64",
            "--in-flight",  # one call at a time: identical batches, so identical floats
            "1",
            # score's default is low, and a low call is cut into background rows while normal traffic is
            # recent (the earlier tests'); other executions would change the floats' last digits
            "--priority",
            "normal",
            "--protocol",
            protocol,
        )
    assert outputs["v2"].read_text() == outputs["native"].read_text()
    assert len(outputs["v2"].read_text().splitlines()) == 301
