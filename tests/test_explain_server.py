"""Explain against the real server over gRPC and HTTP: the answer's shape and meaning, targets, errors,
a version without the signatures, metrics and request ids."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import repository_without_explain
from prometheus_client.parser import text_string_to_metric_families

from classify_client import Client
from classify_client.errors import ClassifyError, InvalidInputError
from classify_client.formats import read_idx

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(server):
    with Client(server.target, timeout=120) as connected:
        yield connected


@pytest.fixture(scope="module")
def digits(validation_files: Path) -> np.ndarray:
    return read_idx(validation_files / "validation-images-idx3-ubyte.gz")[:8]


def test_cnn_explains_each_items_top_class_by_integrated_gradients(client, digits) -> None:
    result = client.explain("mnist-cnn", images=digits)
    classified = client.classify("mnist-cnn", images=digits)
    assert (result.model, result.method, result.steps) == ("mnist-cnn", "integrated_gradients", 32)
    assert result.maps().shape == (8, 28, 28) and result.maps().dtype == np.float32
    for item, prediction in zip(result.items, classified.predictions, strict=True):
        (attribution,) = item
        assert attribution.target_label == prediction.label
        assert attribution.probability == pytest.approx(prediction.score, abs=1e-5)
        assert attribution.relative_gap <= 0.05
        # Integrated gradients from black: a pixel that is black gets nothing.
        assert np.all(attribution.map[digits[result.items.index(item)] == 0] == 0)


def test_targets_top_k_and_methods(client, digits) -> None:
    top = client.explain("mnist-cnn", images=digits[:2], top_k=3, method="occlusion")
    assert top.method == "occlusion" and top.steps == 0
    assert [len(item) for item in top.items] == [3, 3]
    probabilities = [a.probability for a in top.items[0]]
    assert probabilities == sorted(probabilities, reverse=True)
    by_label = client.explain("mnist-softmax", images=digits[:2], target="3")
    by_index = client.explain("mnist-softmax", images=digits[:2], target=3)
    assert by_label.method == "votes"
    assert {a.target_label for item in by_label.items for a in item} == {"3"}
    np.testing.assert_array_equal(by_label.maps(), by_index.maps())
    for item in by_label.items:  # votes are exact
        assert abs(item[0].completeness_gap) <= 1e-4 * max(1.0, abs(item[0].logit))


def test_reviews_come_back_as_the_models_own_tokens(client) -> None:
    result = client.explain("imdb-lstm", texts=["A WONDERFUL film!!! I loved it.", "Dull, awful acting."])
    first = result.items[0][0]
    assert first.tokens == ["a", "wonderful", "film", "i", "loved", "it"]
    assert first.scores is not None and first.scores.shape == (6,)
    assert result.items[1][0].tokens == ["dull", "awful", "acting"]


def test_bad_explain_requests_say_what_was_expected(client, digits) -> None:
    cases = [
        ({"method": "votes"}, "explains with integrated_gradients, occlusion, not votes"),
        ({"target": "seven"}, "has no label 'seven'; its labels: 0, 1"),
        ({"target": 12}, "target index 12 is out of range"),
        ({"steps": 5000}, "steps must be between 1 and 1024"),
    ]
    for options, message in cases:
        with pytest.raises(InvalidInputError, match=message):
            client.explain("mnist-cnn", images=digits[:1], **options)
    with pytest.raises(InvalidInputError, match="classifies texts"):
        client.explain("imdb-lstm", images=digits[:1])


def test_http_explain_verb_with_and_without_a_version(server, digits) -> None:
    with httpx.Client(base_url=server.http_url(), timeout=120) as http:
        body = {"images": digits[:2].tolist(), "target": "7", "method": "integrated_gradients", "steps": 16}
        reply = http.post("/v1/models/mnist-mlp:explain", json=body, headers={"x-request-id": "explain-42"})
        assert reply.status_code == 200, reply.text
        assert reply.headers["x-request-id"] == "explain-42"
        answer = reply.json()
        assert (answer["model"], answer["method"], answer["steps"]) == (
            "mnist-mlp",
            "integrated_gradients",
            16,
        )
        target = answer["explanations"][0]["targets"][0]
        assert target["label"] == "7" and np.asarray(target["attributions"]).shape == (28, 28)
        versioned = http.post("/v1/models/imdb-lstm/versions/1:explain", json={"texts": ["great fun"]})
        assert versioned.status_code == 200, versioned.text
        assert versioned.json()["explanations"][0]["targets"][0]["tokens"] == ["great", "fun"]
        bad = http.post("/v1/models/mnist-mlp:explain", json={"images": [[[0] * 28] * 28], "method": "shap"})
        assert bad.status_code == 400 and "method" in bad.json()["error"]
        missing = http.post("/v1/models/mnist-mlp/versions/9:explain", json={"texts": ["x"]})
        assert missing.status_code == 404


def test_explain_is_counted_as_its_own_method(server, client, digits) -> None:
    client.explain("mnist-softmax", images=digits[:1])
    with urllib.request.urlopen(server.metrics_url(), timeout=10) as reply:
        metrics = reply.read().decode()
    assert (
        'classify_requests_total{code="OK",method="Explain",model="mnist-softmax",protocol="native",version="1"}'
        in metrics
    )
    # The explain scheduler's own counters: what it took, ran and how long the model spent on it.
    counters = {
        (sample.name, sample.labels.get("model")): sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
    }
    assert counters[("classify_explain_requests_total", "mnist-softmax")] >= 1
    assert counters[("classify_explain_items_total", "mnist-softmax")] >= 1
    assert counters[("classify_explain_executions_total", "mnist-softmax")] >= 1
    assert counters[("classify_explain_compute_seconds_total", "mnist-softmax")] > 0
    assert counters[("classify_explain_rejected_total", "mnist-softmax")] == 0


def test_a_version_without_the_signatures_names_the_command_that_adds_them(
    quick_repository: Path, tmp_path: Path, private_server
) -> None:
    server = private_server(repository_without_explain(quick_repository, tmp_path / "repo"))
    server.wait_serving()
    image = np.zeros((1, 28, 28), np.uint8)
    with Client(server.target, timeout=60) as old_client:
        assert old_client.classify("mnist-softmax", images=image).predictions  # it still classifies
        with pytest.raises(ClassifyError) as raised:
            old_client.explain("mnist-softmax", images=image)
    assert raised.value.code.name == "FAILED_PRECONDITION"
    assert "classify-train export-signatures --model-repository" in str(raised.value)
    assert "--name mnist-softmax --version 1" in str(raised.value)
    reply = httpx.post(
        f"{server.http_url()}/v1/models/mnist-softmax:explain", json={"images": image.tolist()}
    )
    assert reply.status_code == 400 and reply.json()["code"] == "FAILED_PRECONDITION"
