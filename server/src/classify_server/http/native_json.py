"""Classify's own JSON API: ``POST /api/v1/models/{name}:classify`` and the model list.

Three bodies: JSON (``images`` as nested uint8 lists, or ``texts``), ``multipart/form-data`` with one or
more ``image`` files, or a raw ``image/png`` / ``image/jpeg`` body; files are decoded server-side
(images.py). The answer has the gRPC API's shape: per item, the top-k classes best first.
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile

from classify_server.errors import InvalidInputError
from classify_server.http.errors import UnsupportedMediaTypeError
from classify_server.http.guard import HttpContext, parse_json
from classify_server.http.images import IMAGE_MEDIA_TYPES, decode_image
from classify_server.http.openapi import ERRORS, json_request_body
from classify_server.serving.data_plane import Classification, ClassifyCall
from classify_server.serving.registry import READY
from classify_server.serving.validation import IMAGE_HEIGHT, IMAGE_WIDTH, ImagePayload, Payload, TextPayload

PROTOCOL = "http-native"
TAG = "Native"
TAG_DESCRIPTION = (
    "Classify's own JSON API: images as nested uint8 lists or uploaded PNG/JPEG files, texts as strings."
)
WHAT = 'a classify request: {"images": [[[0-255, ...28], ...28 rows]]} or {"texts": ["..."]}'
FILE_FIELDS = ("image", "images")
MAX_FILES = 4096  # as many as --max-request-rows allows by default

Pixel = Annotated[int, Field(ge=0, le=255)]


class NativeClassifyRequest(BaseModel):
    images: list[list[list[Pixel]]] | None = Field(
        None, description="Images as uint8 pixels (0-255, light on dark), each 28 rows of 28"
    )
    texts: list[str] | None = Field(None, description="Texts (for text models such as imdb-lstm)")
    top_k: int = Field(1, ge=1, description="How many classes per item, best first")
    version: int | None = Field(None, ge=1, description="Model version; default: the newest ready one")
    version_label: str | None = Field(
        None, description="A version label (stable, canary) instead of a version; set at most one of the two"
    )
    return_probabilities: bool = Field(False, description="Also return every class's probability")


class ClassScore(BaseModel):
    index: int = Field(description="Class index")
    label: str = Field(description="Class label")
    score: float = Field(description="Probability of the class")


class Prediction(BaseModel):
    classes: list[ClassScore] = Field(description="The top-k classes, best first")
    probabilities: list[float] | None = Field(None, description="Every class's probability, if asked")


class NativeClassifyResponse(BaseModel):
    model: str = Field(description="Model that answered")
    version: int = Field(description="Version that answered")
    predictions: list[Prediction] = Field(description="One per item, in request order")


class ModelSummary(BaseModel):
    name: str = Field(description="Model name")
    state: str = Field(description="ready, loading, failed, unloading or unloaded")
    version: int = Field(description="Version unversioned requests get")
    task: str = Field(description="What the model classifies")
    reason: str = Field(description="Why it is not ready, if it is not")
    versions: list[int] = Field(description="Versions ready to serve, oldest first (the playground's list)")


REQUEST_MODELS: list[type[BaseModel]] = [NativeClassifyRequest]
UPLOAD_SCHEMA = {
    "multipart/form-data": {
        "schema": {
            "type": "object",
            "properties": {
                "image": {"type": "array", "items": {"type": "string", "format": "binary"}},
                "top_k": {"type": "integer", "minimum": 1},
                "version": {"type": "integer", "minimum": 1},
                "version_label": {"type": "string"},
            },
            "required": ["image"],
        }
    },
    **{media: {"schema": {"type": "string", "format": "binary"}} for media in IMAGE_MEDIA_TYPES},
}


def router(context: HttpContext) -> APIRouter:
    routes = APIRouter(tags=[TAG], responses=ERRORS)
    plane = context.data_plane

    @routes.get("/api/v1/models", response_model=list[ModelSummary], summary="Models and their states")
    async def list_models(request: Request) -> Response:
        def answer(_: bytes) -> Response:
            return JSONResponse(
                [
                    {
                        "name": s.name,
                        "state": s.state,
                        "version": s.version,
                        "task": s.task,
                        "reason": s.reason,
                        "versions": [v.version for v in s.versions if v.state == READY],
                    }
                    for s in plane.model_states()
                ]
            )

        return await context.serve(request, "", answer, read_body=False)

    @routes.post(
        "/api/v1/models/{name}:classify",
        response_model=NativeClassifyResponse,
        summary="Classify images or texts",
        description="JSON body, a multipart upload of `image` files, or one raw PNG/JPEG body; for the "
        "last two, `top_k` and `version` come as query parameters (or form fields). Files are made "
        "grey and resized to 28×28 with Lanczos, not inverted: digits light on dark, as in MNIST.",
        openapi_extra=json_request_body(
            NativeClassifyRequest, "Images, texts or image files", **UPLOAD_SCHEMA
        ),
    )
    async def classify(request: Request, name: str) -> Response:
        async def answer(body: bytes) -> Response:
            call, with_probabilities = await _call(request, body, name)
            return JSONResponse(_answer(await plane.classify(call), with_probabilities))

        return await context.serve(request, name, answer)

    return routes


async def _call(request: Request, body: bytes, name: str) -> tuple[ClassifyCall, bool]:
    """The data plane's call for any of the three bodies, and whether probabilities were asked for."""
    media = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    # curl -d sends its JSON as application/x-www-form-urlencoded unless told otherwise.
    if media in ("application/json", "application/x-www-form-urlencoded", ""):
        parsed = parse_json(body, NativeClassifyRequest, WHAT)
        if (parsed.images is None) == (parsed.texts is None):
            raise InvalidInputError(f"send either 'images' or 'texts'; expected {WHAT}")
        payload: Payload
        if parsed.images is not None:
            payload = image_payload(parsed.images)
        else:
            payload = TextPayload(tuple(parsed.texts or ()))
        label = _label_alone(parsed.version, parsed.version_label or "")
        call = ClassifyCall(
            name, parsed.version, payload, parsed.top_k, protocol=PROTOCOL, version_label=label
        )
        return call, parsed.return_probabilities
    options: dict[str, Any] = dict(request.query_params)
    if media == "multipart/form-data":
        pixels, fields = await _uploaded(request)
        options |= fields
    elif media in IMAGE_MEDIA_TYPES:
        pixels = [decode_image(body, "the body")]
    else:
        raise UnsupportedMediaTypeError(
            f"Content-Type {media!r} is not accepted; send application/json, multipart/form-data "
            f"or one of {', '.join(IMAGE_MEDIA_TYPES)}"
        )
    batch = np.stack(pixels)
    payload = ImagePayload(batch.tobytes(), tuple(batch.shape))
    version = _positive(options, "version")
    label = _label_alone(version, options.get("version_label", ""))
    top_k = _positive(options, "top_k") or 1
    call = ClassifyCall(name, version, payload, top_k, protocol=PROTOCOL, version_label=label)
    return call, options.get("return_probabilities", "").lower() in ("1", "true", "yes")


async def _uploaded(request: Request) -> tuple[list[np.ndarray], dict[str, str]]:
    """Decoded pixels of the form's image files, and its plain fields (top_k, version)."""
    form = await request.form(max_files=MAX_FILES, max_fields=16)
    files = [item for key in FILE_FIELDS for item in form.getlist(key) if isinstance(item, UploadFile)]
    if not files:
        raise InvalidInputError(
            "the form carries no file; upload PNG/JPEG files as 'image' (curl -F image=@digit.png)"
        )
    pixels = [
        decode_image(await file.read(), f"file {file.filename or position}")
        for position, file in enumerate(files)
    ]
    return pixels, {key: value for key, value in form.items() if isinstance(value, str)}


def image_payload(images: list[list[list[int]]]) -> ImagePayload:
    shapes = {(len(image), *{len(row) for row in image}) for image in images}
    if any(len(shape) != 2 or shape != (IMAGE_HEIGHT, IMAGE_WIDTH) for shape in shapes):
        sizes = ", ".join(sorted("x".join(map(str, shape)) for shape in shapes))
        raise InvalidInputError(
            f"every image must be {IMAGE_HEIGHT} rows of {IMAGE_WIDTH} pixels; got {sizes}"
        )
    batch = np.asarray(images, dtype=np.uint8).reshape(len(images), IMAGE_HEIGHT, IMAGE_WIDTH)
    return ImagePayload(batch.tobytes(), tuple(batch.shape))


def _positive(options: dict[str, Any], key: str) -> int | None:
    text = options.get(key)
    if text in (None, ""):
        return None
    if not str(text).isdigit() or int(text) < 1:
        raise InvalidInputError(f"{key} must be a positive whole number, not {text!r}")
    return int(text)


def _answer(result: Classification, with_probabilities: bool) -> dict[str, Any]:
    labels = result.spec.labels
    probabilities = result.probabilities.tolist() if with_probabilities else None
    predictions = []
    for row, (indices, scores) in enumerate(
        zip(result.top_indices.tolist(), result.top_scores.tolist(), strict=True)
    ):
        prediction: dict[str, Any] = {
            "classes": [
                {"index": index, "label": labels[index], "score": score}
                for index, score in zip(indices, scores, strict=True)
            ]
        }
        if probabilities is not None:
            prediction["probabilities"] = probabilities[row]
        predictions.append(prediction)
    return {"model": result.spec.name, "version": result.spec.version, "predictions": predictions}


def _label_alone(version: int | None, label: str) -> str:
    if version is not None and label:
        raise InvalidInputError(f"the request names version {version} and version_label {label!r}; set one")
    return label
