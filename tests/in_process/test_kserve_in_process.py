"""KServe V2 of the in-process server over a fake model, through our generated stubs.

tritonclient cannot be imported beside the in-process server (the two define the same protobuf names;
see conftest.py), and test_protocol_vendored.py proves our messages are tritonclient's on the wire, so
these calls are what tritonclient sends; tritonclient itself is in tests/test_protocol_kserve.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from fake_serving import InProcessServer

from classify_client.wire.proto.inference import grpc_predict_v2_pb2 as v2
from classify_client.wire.proto.inference import grpc_predict_v2_pb2_grpc as v2_grpc

IMAGE_MODEL, TEXT_MODEL = "mnist-cnn", "imdb-lstm"


@pytest.fixture(scope="module")
def stub(fake_server: InProcessServer) -> Iterator[v2_grpc.GRPCInferenceServiceStub]:
    with grpc.insecure_channel(fake_server.target) as channel:
        yield v2_grpc.GRPCInferenceServiceStub(channel)


def infer_request(name: str, array: np.ndarray, datatype: str, model: str = IMAGE_MODEL, **fields):
    request = v2.ModelInferRequest(model_name=model, **fields)
    request.inputs.add(name=name, datatype=datatype, shape=list(array.shape))
    request.raw_input_contents.append(array.tobytes())
    return request


def length_prefixed(raw: bytes) -> list[str]:
    """BYTES tensor contents: each element a 4-byte little-endian length, then its bytes."""
    entries, offset = [], 0
    while offset < len(raw):
        size = int.from_bytes(raw[offset : offset + 4], "little")
        entries.append(raw[offset + 4 : offset + 4 + size].decode())
        offset += 4 + size
    return entries


def test_liveness_readiness_and_metadata(stub: v2_grpc.GRPCInferenceServiceStub) -> None:
    assert stub.ServerLive(v2.ServerLiveRequest()).live
    assert stub.ServerReady(v2.ServerReadyRequest()).ready
    assert stub.ModelReady(v2.ModelReadyRequest(name=IMAGE_MODEL, version="1")).ready
    assert not stub.ModelReady(v2.ModelReadyRequest(name=IMAGE_MODEL, version="99")).ready
    server = stub.ServerMetadata(v2.ServerMetadataRequest())
    assert server.name == "classify" and "classification" in server.extensions
    model = stub.ModelMetadata(v2.ModelMetadataRequest(name=TEXT_MODEL))
    assert list(model.versions) == ["1"]
    assert [(t.name, t.datatype, list(t.shape)) for t in model.inputs] == [("texts", "BYTES", [-1])]
    assert [(t.name, t.datatype, list(t.shape)) for t in model.outputs] == [
        ("probabilities", "FP32", [-1, 2])
    ]


def test_uint8_images_answer_probabilities_per_row(stub: v2_grpc.GRPCInferenceServiceStub) -> None:
    images = np.random.default_rng(5).integers(0, 256, size=(3, 28, 28), dtype=np.uint8)
    response = stub.ModelInfer(infer_request("images", images, "UINT8", id="req-1"), timeout=10)
    assert (response.id, response.model_name, response.model_version) == ("req-1", IMAGE_MODEL, "1")
    (output,) = response.outputs
    assert (output.name, output.datatype, list(output.shape)) == ("probabilities", "FP32", [3, 10])
    probabilities = np.frombuffer(response.raw_output_contents[0], "<f4").reshape(3, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-5)


def test_the_classification_extension_returns_top_k_best_first(
    stub: v2_grpc.GRPCInferenceServiceStub,
) -> None:
    images = np.random.default_rng(6).integers(0, 256, size=(2, 28, 28), dtype=np.uint8)
    probabilities = np.frombuffer(
        stub.ModelInfer(infer_request("images", images, "UINT8"), timeout=10).raw_output_contents[0], "<f4"
    ).reshape(2, 10)
    request = infer_request("images", images, "UINT8")
    request.outputs.add(name="probabilities").parameters["classification"].int64_param = 3
    response = stub.ModelInfer(request, timeout=10)
    assert list(response.outputs[0].shape) == [2, 3]
    assert response.outputs[0].datatype == "BYTES"
    entries = length_prefixed(response.raw_output_contents[0])
    for row in range(2):
        parsed = [entry.split(":") for entry in entries[row * 3 : row * 3 + 3]]
        best = np.argsort(-probabilities[row], kind="stable")[:3]
        assert [(int(index), label) for _, index, label in parsed] == [(int(i), str(i)) for i in best]
        assert [float(score) for score, _, _ in parsed] == pytest.approx(probabilities[row][best], abs=1e-6)


@pytest.mark.parametrize(
    ("name", "array", "datatype", "message"),
    [
        ("pixels", np.zeros((1, 28, 28), np.uint8), "UINT8", "unknown input 'pixels'"),
        ("images", np.zeros((1, 28, 28), np.int32), "INT32", "datatype 'INT32'"),
        ("images", np.zeros((1, 27, 28), np.uint8), "UINT8", "shape [1, 27, 28]"),
        ("images", np.full((1, 28, 28), 2.0, np.float32), "FP32", "must lie in [0, 1]"),
    ],
)
def test_bad_inputs_say_what_is_expected(
    stub: v2_grpc.GRPCInferenceServiceStub, name: str, array: np.ndarray, datatype: str, message: str
) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        stub.ModelInfer(infer_request(name, array, datatype), timeout=10)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in raised.value.details()


def test_unknown_output_model_and_version(stub: v2_grpc.GRPCInferenceServiceStub) -> None:
    images = np.zeros((1, 28, 28), np.uint8)
    request = infer_request("images", images, "UINT8")
    request.outputs.add(name="scores")
    cases = [
        (request, grpc.StatusCode.INVALID_ARGUMENT, "unknown output 'scores'"),
        (
            infer_request("images", images, "UINT8", model="no-such-model"),
            grpc.StatusCode.NOT_FOUND,
            "not found",
        ),
        (
            infer_request("images", images, "UINT8", model_version="7"),
            grpc.StatusCode.NOT_FOUND,
            "no version 7",
        ),
    ]
    for bad, code, message in cases:
        with pytest.raises(grpc.RpcError) as raised:
            stub.ModelInfer(bad, timeout=10)
        assert raised.value.code() == code
        assert message in raised.value.details()
