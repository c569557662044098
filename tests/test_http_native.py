"""The native JSON API and OpenAPI: JSON images and texts, multipart uploads and raw PNG/JPEG bodies."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest
from PIL import Image

from classify_client import Client

IMAGE_MODEL, TEXT_MODEL = "mnist-cnn", "imdb-lstm"


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.http_url(), timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    return np.random.default_rng(4).integers(0, 256, size=(2, 28, 28), dtype=np.uint8)


def encoded(pixels: np.ndarray, image_format: str, scale: int = 1) -> bytes:
    image = Image.fromarray(pixels, mode="L").convert("RGB")
    if scale != 1:
        image = image.resize((28 * scale, 28 * scale), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format=image_format)
    return buffer.getvalue()


def native(server, **inputs):
    with Client(server.target, timeout=30) as client:
        return client.classify(
            IMAGE_MODEL if "images" in inputs else TEXT_MODEL, return_probabilities=True, top_k=3, **inputs
        )


def test_json_images_and_texts_match_grpc(http, server, digits) -> None:
    expected = native(server, images=digits)
    reply = http.post(
        f"/api/v1/models/{IMAGE_MODEL}:classify",
        json={"images": digits.tolist(), "top_k": 3, "return_probabilities": True},
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["model"] == IMAGE_MODEL and body["version"] == 1
    for prediction, probabilities in zip(body["predictions"], expected.probabilities, strict=True):
        assert [c["index"] for c in prediction["classes"]] == list(np.argsort(-probabilities)[:3])
        np.testing.assert_allclose(prediction["probabilities"], probabilities, atol=1e-6)
    texts = http.post(
        f"/api/v1/models/{TEXT_MODEL}:classify",
        json={"texts": ["Wonderful film, loved it.", "Awful, boring."], "version": 1},
    )
    assert [p["classes"][0]["label"] for p in texts.json()["predictions"]] == ["positive", "negative"]


def test_multipart_and_raw_uploads_decode_to_the_same_pixels(http, server, digits) -> None:
    expected = native(server, images=digits).probabilities
    files = [("image", (f"d{i}.png", encoded(d, "PNG", scale=3), "image/png")) for i, d in enumerate(digits)]
    upload = http.post(
        f"/api/v1/models/{IMAGE_MODEL}:classify",
        files=files,
        data={"top_k": "2", "return_probabilities": "true"},
    )
    assert upload.status_code == 200, upload.text
    predictions = upload.json()["predictions"]
    assert len(predictions) == 2 and len(predictions[0]["classes"]) == 2
    # 84x84 nearest-neighbour copies, resized back to 28x28 with Lanczos: the same pixels within rounding.
    np.testing.assert_allclose([p["probabilities"] for p in predictions], expected, atol=0.05)
    raw = http.post(
        f"/api/v1/models/{IMAGE_MODEL}:classify?top_k=3",
        content=encoded(digits[0], "PNG"),
        headers={"content-type": "image/png"},
    )
    assert raw.status_code == 200, raw.text
    assert [c["index"] for c in raw.json()["predictions"][0]["classes"]] == list(np.argsort(-expected[0])[:3])
    jpeg = http.post(
        f"/api/v1/models/{IMAGE_MODEL}:classify",
        content=encoded(digits[1], "JPEG"),
        headers={"content-type": "image/jpeg"},
    )
    assert jpeg.status_code == 200 and len(jpeg.json()["predictions"]) == 1


def test_bad_uploads_are_clear_4xx(http) -> None:
    broken = http.post(
        f"/api/v1/models/{IMAGE_MODEL}:classify", content=b"not a png", headers={"content-type": "image/png"}
    )
    assert broken.status_code == 400 and "not a readable PNG or JPEG" in broken.json()["error"]
    no_file = http.post(
        f"/api/v1/models/{IMAGE_MODEL}:classify", files=[("other", ("x.txt", b"x", "text/plain"))]
    )
    assert no_file.status_code == 400 and "upload PNG/JPEG files as 'image'" in no_file.json()["error"]
    media = http.post(
        f"/api/v1/models/{IMAGE_MODEL}:classify", content=b"x", headers={"content-type": "text/csv"}
    )
    assert media.status_code == 415
    both = http.post(f"/api/v1/models/{TEXT_MODEL}:classify", json={"texts": ["a"], "images": []})
    assert both.status_code == 400 and "either 'images' or 'texts'" in both.json()["error"]
    size = http.post(f"/api/v1/models/{IMAGE_MODEL}:classify", json={"images": [[[0] * 27] * 28]})
    assert size.status_code == 400 and "28 rows of 28 pixels" in size.json()["error"]
    pixel = http.post(f"/api/v1/models/{IMAGE_MODEL}:classify", json={"images": [[[300] * 28] * 28]})
    assert pixel.status_code == 400 and "less than or equal to 255" in pixel.json()["error"]


def test_openapi_describes_every_field(http) -> None:
    schema = http.get("/openapi.json").json()
    paths = schema["paths"]
    for path in ("/v2/models/{name}/infer", "/v1/models/{name}:predict", "/api/v1/models/{name}:classify"):
        assert "post" in paths[path], path
    components = schema["components"]["schemas"]
    for name in (
        "InferenceRequest",
        "TfsPredictRequest",
        "TfsClassifyRequest",
        "NativeClassifyRequest",
        "NativeClassifyResponse",
        "ErrorBody",
    ):
        assert name in components, name
    undescribed = [
        f"{model}.{field}"
        for model, definition in components.items()
        if model not in ("HTTPValidationError", "ValidationError")
        for field, spec in definition.get("properties", {}).items()
        if not spec.get("description")
    ]
    assert undescribed == []
    docs = http.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
