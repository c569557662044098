"""TF Serving's REST API on the HTTP port: the `curl` examples of TF Serving's REST documentation, with
only the model name (and, for predict, the data such a model takes) changed, sent by a plain HTTP client.
"""

from __future__ import annotations

import base64

import httpx
import numpy as np
import pytest

from classify_client import Client

IMAGE_MODEL, TEXT_MODEL = "mnist-cnn", "imdb-lstm"
POSITIVE, NEGATIVE = (
    "A wonderful, moving film: superb acting, I loved it.",
    "Dull, boring and awful; a waste.",
)


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.http_url(), timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, size=(3, 28, 28), dtype=np.uint8)


def native(server, model: str, **inputs) -> np.ndarray:
    with Client(server.target, timeout=30) as client:
        return client.classify(model, return_probabilities=True, **inputs).probabilities


def test_model_status_as_documented(http) -> None:
    # curl http://localhost:8501/v1/models/half_plus_three
    expected = {
        "model_version_status": [
            {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        ]
    }
    for path in ("", "/versions/1", "/labels/latest"):
        reply = http.get(f"/v1/models/{IMAGE_MODEL}{path}")
        assert reply.status_code == 200, reply.text
        assert reply.json() == expected
    missing = http.get(f"/v1/models/{IMAGE_MODEL}/versions/7")
    assert missing.status_code == 404 and "no version 7" in missing.json()["error"]


def test_metadata_is_the_signature_def_map(http) -> None:
    reply = http.get(f"/v1/models/{IMAGE_MODEL}/metadata")
    assert reply.status_code == 200
    body = reply.json()
    assert body["model_spec"] == {"name": IMAGE_MODEL, "signature_name": "", "version": "1"}
    signature = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature["method_name"] == "tensorflow/serving/predict"
    assert signature["inputs"]["images"]["dtype"] == "DT_UINT8"
    assert [d["size"] for d in signature["outputs"]["probabilities"]["tensor_shape"]["dim"]] == ["-1", "10"]


def test_predict_row_format_texts(http, server) -> None:
    # curl -d '{"instances": [1.0,2.0,5.0]}' -X POST http://localhost:8501/v1/models/half_plus_three:predict
    reply = http.post(
        f"/v1/models/{TEXT_MODEL}:predict", content=f'{{"instances": ["{POSITIVE}", "{NEGATIVE}"]}}'
    )
    assert reply.status_code == 200, reply.text
    predictions = np.array(reply.json()["predictions"])
    np.testing.assert_allclose(predictions, native(server, TEXT_MODEL, texts=[POSITIVE, NEGATIVE]), atol=1e-6)


def test_predict_row_and_columnar_images(http, server, images) -> None:
    expected = native(server, IMAGE_MODEL, images=images)
    rows = http.post(f"/v1/models/{IMAGE_MODEL}/versions/1:predict", json={"instances": images.tolist()})
    assert rows.status_code == 200, rows.text
    np.testing.assert_allclose(rows.json()["predictions"], expected, atol=1e-6)
    named = http.post(
        f"/v1/models/{IMAGE_MODEL}:predict",
        json={
            "signature_name": "serving_default",
            "instances": [{"images": image} for image in images.tolist()],
        },
    )
    np.testing.assert_allclose(named.json()["predictions"], expected, atol=1e-6)
    columnar = http.post(
        f"/v1/models/{IMAGE_MODEL}/labels/latest:predict",
        json={"inputs": {"images": (images / 255.0).tolist()}},
    )
    assert columnar.status_code == 200, columnar.text
    np.testing.assert_allclose(columnar.json()["outputs"], expected, atol=1e-5)


def test_classify_examples(http) -> None:
    reply = http.post(
        f"/v1/models/{TEXT_MODEL}:classify", json={"examples": [{"text": POSITIVE}, {"text": NEGATIVE}]}
    )
    assert reply.status_code == 200, reply.text
    result = reply.json()["result"]
    assert [row[0][0] for row in result] == ["positive", "negative"]
    assert all(abs(sum(score for _, score in row) - 1) < 1e-5 for row in result)
    image = np.zeros((28, 28), dtype=np.uint8)
    as_bytes = {"image": {"b64": base64.b64encode(image.tobytes()).decode()}}
    as_floats = {"image": (image.reshape(-1) / 255.0).tolist()}
    answers = [
        http.post(f"/v1/models/{IMAGE_MODEL}:classify", json={"examples": [example, example]}).json()[
            "result"
        ]
        for example in (as_bytes, as_floats)
    ]
    assert answers[0] == answers[1] and len(answers[0]) == 2 and len(answers[0][0]) == 10
    mixed = http.post(f"/v1/models/{IMAGE_MODEL}:classify", json={"examples": [as_bytes, as_floats]})
    assert mixed.status_code == 400 and "mixed image encodings" in mixed.json()["error"]


def test_errors_as_documented(http) -> None:
    # curl -i -d '{"instances": [1.0,5.0]}' -X POST http://localhost:8501/v1/models/half:predict
    reply = http.post("/v1/models/half:predict", content='{"instances": [1.0,5.0]}')
    assert reply.status_code == 404
    assert reply.headers["content-type"] == "application/json"
    assert "model 'half' not found" in reply.json()["error"]
    shape = http.post(f"/v1/models/{IMAGE_MODEL}:predict", content='{"instances": [1.0,2.0,5.0]}')
    assert shape.status_code == 400 and "has shape [3]" in shape.json()["error"]
    signature = http.post(
        f"/v1/models/{TEXT_MODEL}:predict", json={"signature_name": "other", "instances": ["x"]}
    )
    assert signature.status_code == 400 and "no signature 'other'" in signature.json()["error"]
    regress = http.post(f"/v1/models/{TEXT_MODEL}:regress", json={"examples": [{"text": "x"}]})
    assert regress.status_code == 501 and "classifier" in regress.json()["error"]
    label = http.get(f"/v1/models/{IMAGE_MODEL}/labels/stable")
    assert label.status_code == 404 and "no version label 'stable'" in label.json()["error"]
