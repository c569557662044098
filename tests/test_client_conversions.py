"""numpy ⇄ protobuf conversions, chunking and typed results of the client library (no server needed)."""

from __future__ import annotations

import re

import grpc
import numpy as np
import pytest

from classify_client.conversions import (
    Inputs,
    as_image_array,
    as_inputs,
    as_texts,
    check_top_k,
    chunk_bounds,
    classify_request,
    merge_results,
    metadata_from_proto,
    result_from_response,
)
from classify_client.errors import InvalidInputError, OverloadedError
from classify_client.settings import UNSET, CallDefaults, channel_options
from classify_client.streaming import reply_from_proto, stream_request_proto
from classify_client.types import StreamRequest
from classify_client.wire.arrays import images_from_batch, top_classes
from classify_client.wire.proto.classify.v1 import classify_pb2

RNG = np.random.default_rng(7)


def digits(n: int) -> np.ndarray:
    return RNG.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)


@pytest.mark.parametrize(
    ("shape", "rows"),
    [((5, 28, 28), 5), ((5, 28, 28, 1), 5), ((5, 784), 5), ((28, 28), 1)],
)
def test_accepted_image_shapes_become_n_28_28(shape: tuple[int, ...], rows: int) -> None:
    images = RNG.integers(0, 256, size=shape, dtype=np.uint8)
    array = as_image_array(images)
    assert array.shape == (rows, 28, 28)
    assert array.dtype == np.uint8
    assert array.flags.c_contiguous
    np.testing.assert_array_equal(array.reshape(-1), images.reshape(-1))


def test_float_images_in_unit_range_are_rounded_to_uint8() -> None:
    floats = np.array([0.0, 0.5, 1.0, 0.999, 0.001, 1 / 255, 0.4 / 255], dtype=np.float64)
    images = np.resize(floats, (1, 28, 28))
    array = as_image_array(images)
    assert array[0, 0, :7].tolist() == [0, 128, 255, 255, 0, 1, 0]


@pytest.mark.parametrize(
    ("images", "fragment"),
    [
        (np.zeros((2, 28, 27), np.uint8), "got shape (2, 28, 27)"),
        (np.zeros((784,), np.uint8), "got shape (784,)"),
        (np.zeros((2, 28, 28, 3), np.uint8), "got shape (2, 28, 28, 3)"),
        (np.zeros((2, 28, 28), np.int64), "got dtype int64"),
        (np.full((2, 28, 28), 2.0), "floats outside [0, 1]"),
        (np.full((2, 28, 28), np.nan), "floats outside [0, 1]"),
    ],
)
def test_bad_images_name_the_expected_shapes_and_dtypes(images: np.ndarray, fragment: str) -> None:
    with pytest.raises(ValueError, match=re.escape("(N, 28, 28), (N, 28, 28, 1), (N, 784)")) as info:
        as_image_array(images)
    assert fragment in str(info.value)
    assert "uint8" in str(info.value)


def test_exactly_one_of_images_and_texts() -> None:
    with pytest.raises(TypeError, match=r"exactly one of images= .* or texts="):
        as_inputs()
    with pytest.raises(TypeError, match="exactly one"):
        as_inputs(images=digits(1), texts=["a"])
    with pytest.raises(ValueError, match="empty"):
        as_inputs(texts=[])


def test_texts_must_be_a_list_of_strings() -> None:
    with pytest.raises(TypeError, match=r"not a single string: use texts=\[text\]"):
        as_texts("a great film")
    with pytest.raises(TypeError, match=r"texts\[1\] is int"):
        as_texts(["fine", 3])
    assert as_texts(("a", "b")) == ["a", "b"]


@pytest.mark.parametrize("top_k", [0, -1, 1.5, True, "2"])
def test_top_k_must_be_a_positive_integer(top_k: object) -> None:
    with pytest.raises(ValueError, match="top_k"):
        check_top_k(top_k)  # type: ignore[arg-type]


def test_chunk_bounds_cover_every_row_in_order() -> None:
    assert chunk_bounds(5, 2) == [(0, 2), (2, 4), (4, 5)]
    assert chunk_bounds(4, 4) == [(0, 4)]
    assert chunk_bounds(1, 256) == [(0, 1)]
    with pytest.raises(ValueError, match="chunk_rows"):
        chunk_bounds(3, 0)


def test_image_request_carries_raw_bytes_and_shape() -> None:
    images = digits(3)
    request = classify_request(
        "mnist-cnn", Inputs(images=images), top_k=3, version=2, return_probabilities=True, request_id="r1"
    )
    wire = classify_pb2.ClassifyRequest.FromString(request.SerializeToString())
    assert wire.WhichOneof("input") == "images"
    assert list(wire.images.shape) == [3, 28, 28]
    assert len(wire.images.data) == 3 * 784
    np.testing.assert_array_equal(images_from_batch(wire.images), images)
    assert (wire.model, wire.version, wire.top_k, wire.return_probabilities, wire.request_id) == (
        "mnist-cnn",
        2,
        3,
        True,
        "r1",
    )


def test_text_request_and_unset_version() -> None:
    request = classify_request("imdb-lstm", Inputs(texts=["good", "bad"]))
    assert request.WhichOneof("input") == "texts"
    assert list(request.texts.texts) == ["good", "bad"]
    assert request.version == 0


def response(labels: list[str], tops: list[int], *, version: int = 1, probabilities: bool = False):
    message = classify_pb2.ClassifyResponse(model="m", version=version)
    for top in tops:
        prediction = message.predictions.add()
        prediction.classes.add(index=top, label=labels[top], score=0.75)
        prediction.classes.add(
            index=(top + 1) % len(labels), label=labels[(top + 1) % len(labels)], score=0.25
        )
        if probabilities:
            vector = [0.0] * len(labels)
            vector[top], vector[(top + 1) % len(labels)] = 0.75, 0.25
            prediction.probabilities.extend(vector)
    return message


def test_result_from_response_is_typed_and_numpy() -> None:
    labels = [str(d) for d in range(10)]
    result = result_from_response(response(labels, [7, 2, 9], probabilities=True))
    assert (result.model, result.version, len(result)) == ("m", 1, 3)
    assert result.labels == ["7", "2", "9"]
    np.testing.assert_array_equal(result.indices, [7, 2, 9])
    np.testing.assert_allclose(result.scores, [0.75] * 3)
    assert result.probabilities is not None
    assert result.probabilities.shape == (3, 10)
    first = result.predictions[0]
    assert (first.label, first.index, first.score) == ("7", 7, 0.75)
    assert [c.label for c in first.classes] == ["7", "8"]


def test_probabilities_are_none_unless_requested() -> None:
    result = result_from_response(response(["neg", "pos"], [1, 0]))
    assert result.probabilities is None
    assert result.predictions[0].probabilities is None


def test_chunk_results_are_merged_in_order() -> None:
    labels = [str(d) for d in range(10)]
    parts = [result_from_response(response(labels, tops)) for tops in ([1, 2], [3, 4], [5])]
    merged = merge_results(parts)
    assert merged.labels == ["1", "2", "3", "4", "5"]
    assert merged.version == 1
    with pytest.raises(ValueError, match="no results"):
        merge_results([])


def test_metadata_from_proto() -> None:
    message = classify_pb2.ModelMetadata(
        name="mnist-cnn",
        version=3,
        task="image-classification",
        labels=[str(d) for d in range(10)],
        input=classify_pb2.InputSpec(kind="image", dtype="uint8", shape=[-1, 28, 28], description="d"),
        metrics={"validation_accuracy": 0.98},
        quick=True,
        versions=[2, 3],
        model_json='{"task": "image-classification"}',
    )
    metadata = metadata_from_proto(message)
    assert metadata.input.shape == (-1, 28, 28)
    assert metadata.metrics["validation_accuracy"] == pytest.approx(0.98)
    assert metadata.quick
    assert metadata.versions == [2, 3]
    assert metadata.model_json == {"task": "image-classification"}
    assert metadata_from_proto(classify_pb2.ModelMetadata(model_json="not json")).model_json == {}


def test_stream_requests_are_numbered_and_errors_typed() -> None:
    request = stream_request_proto(StreamRequest("m", texts=["x"]), 4)
    assert request.request_id == "4"
    named = stream_request_proto(StreamRequest("m", texts=["x"], request_id="mine"), 5)
    assert named.request_id == "mine"
    error = classify_pb2.ClassifyStreamResponse(
        request_id="4", error=classify_pb2.StreamError(code=3, message="empty batch")
    )
    reply = reply_from_proto(error)
    assert not reply.ok
    assert isinstance(reply.error, InvalidInputError)
    assert reply.error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert str(reply.error) == "empty batch"
    busy = reply_from_proto(classify_pb2.ClassifyStreamResponse(error=classify_pb2.StreamError(code=8)))
    assert isinstance(busy.error, OverloadedError)
    ok = reply_from_proto(
        classify_pb2.ClassifyStreamResponse(request_id="1", response=response(["a", "b"], [1]))
    )
    assert ok.ok
    assert ok.result is not None
    assert ok.result.labels == ["b"]


def test_headers_merge_over_defaults_with_lowercase_keys() -> None:
    defaults = CallDefaults(timeout=5.0, headers={"Authorization": "Bearer a", "X-Team": "ml"})
    merged = dict(defaults.metadata_for({"authorization": "Bearer b", "X-Trace": "1"}) or ())
    assert merged == {"authorization": "Bearer b", "x-team": "ml", "x-trace": "1"}
    assert CallDefaults().metadata_for(None) is None
    assert defaults.timeout_for(UNSET) == 5.0
    assert defaults.timeout_for(None) is None
    assert defaults.timeout_for(1.5) == 1.5


def test_channel_options_default_to_large_messages_and_take_a_balancer() -> None:
    options = dict(channel_options())
    assert options["grpc.max_send_message_length"] == 64 * 1024 * 1024
    assert options["grpc.max_receive_message_length"] == 64 * 1024 * 1024
    assert "grpc.lb_policy_name" not in options
    balanced = dict(channel_options(load_balancing="round_robin", options=[("grpc.enable_retries", 0)]))
    assert balanced["grpc.lb_policy_name"] == "round_robin"
    assert balanced["grpc.enable_retries"] == 0


def test_top_one_is_the_first_of_tied_classes_as_the_sorted_path_answers() -> None:
    rng = np.random.default_rng(3)
    # Rounded to tenths, ten classes tie often: the one-class fast path must pick as the sort does.
    probabilities = np.round(rng.random((500, 10)), 1).astype(np.float32)
    probabilities[0] = np.nan  # a broken model's row: both paths still agree
    fast_order, fast_scores = top_classes(probabilities, 1)
    sorted_order = np.argsort(-probabilities, axis=1, kind="stable")[:, :1]
    assert fast_order.shape == fast_scores.shape == (500, 1)
    assert np.array_equal(fast_order[1:], sorted_order[1:])
    assert np.array_equal(fast_scores[1:], np.take_along_axis(probabilities, sorted_order, axis=1)[1:])
    two_order, _ = top_classes(probabilities, 2)
    assert np.array_equal(two_order[1:, :1], fast_order[1:])
    assert fast_order[0, 0] == 0 and np.isnan(fast_scores[0, 0])
