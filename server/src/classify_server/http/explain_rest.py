"""``POST /v1/models/{name}[/versions/{v}]:explain``: the ``:explain`` verb of KServe's v1 REST protocol,
with a body like the native JSON classify (``images`` as nested uint8 lists, or ``texts``).

The path sits beside TF Serving's ``/v1/models/{name}:predict`` routes (tfserving_rest.py), which take
the same ``{name}`` and ``/versions/{v}`` forms; only the verb differs, so the two never collide.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from classify_server.errors import InvalidInputError
from classify_server.http.guard import HttpContext, parse_json
from classify_server.http.native_json import Pixel, image_payload
from classify_server.http.openapi import ERRORS, json_request_body
from classify_server.serving.explain_plane import ExplainCall, Explanation
from classify_server.serving.validation import Payload, TextPayload

PROTOCOL = "http-native"  # the native JSON body, and its metrics series
TAG = "Explain"
TAG_DESCRIPTION = "Why a model answered what it did: per-pixel maps or per-token scores (docs/explain.md)."
WHAT = (
    'an explain request: {"images": [[[0-255, ...28], ...28 rows]]} or {"texts": ["..."]}, optionally '
    '"target" (label or index), "top_k", "method" and "steps"'
)
PATHS = ("/v1/models/{name}:explain", "/v1/models/{name}/versions/{version}:explain")


class ExplainJsonRequest(BaseModel):
    images: list[list[list[Pixel]]] | None = Field(
        None, description="Images as uint8 pixels (0-255, light on dark), each 28 rows of 28"
    )
    texts: list[str] | None = Field(None, description="Texts (for text models such as imdb-lstm)")
    target: str | int | None = Field(
        None, description="Class to explain for every item, a label or an index; default: each item's top"
    )
    top_k: int = Field(1, ge=1, description="Explain each item's top_k classes (without a target)")
    method: Literal["auto", "votes", "integrated_gradients", "occlusion"] = Field(
        "auto", description="auto: votes for softmax regressions, integrated gradients otherwise"
    )
    steps: int = Field(0, ge=0, description="Integrated gradients' steps; 0: the default (32)")
    version: int | None = Field(None, ge=1, description="Model version (or put it in the path)")


REQUEST_MODELS: list[type[BaseModel]] = [ExplainJsonRequest]


def router(context: HttpContext) -> APIRouter:
    routes = APIRouter(tags=[TAG], responses=ERRORS)
    plane = context.data_plane

    async def explain(request: Request, name: str, version: str | None) -> Response:
        async def answer(body: bytes) -> Response:
            call = _call(parse_json(body, ExplainJsonRequest, WHAT), name, version)
            return JSONResponse(explanation_json(await plane.explain(call)))

        return await context.serve(request, name, answer)

    extra = json_request_body(ExplainJsonRequest, "Images or texts, and what to explain")
    summary = "Explain: attributions per pixel or token"

    @routes.post(PATHS[0], summary=summary, openapi_extra=extra)
    async def explain_newest(request: Request, name: str) -> Response:
        return await explain(request, name, None)

    @routes.post(PATHS[1], summary=summary + " (one version)", openapi_extra=extra)
    async def explain_version(request: Request, name: str, version: str) -> Response:
        return await explain(request, name, version)

    return routes


def _call(parsed: ExplainJsonRequest, name: str, path_version: str | None) -> ExplainCall:
    if (parsed.images is None) == (parsed.texts is None):
        raise InvalidInputError(f"send either 'images' or 'texts'; expected {WHAT}")
    payload: Payload = (
        image_payload(parsed.images) if parsed.images is not None else TextPayload(tuple(parsed.texts or ()))
    )
    version = parsed.version
    if path_version is not None:
        if not path_version.isdigit() or int(path_version) < 1:
            raise InvalidInputError(
                f"version in the path must be a positive whole number, not {path_version!r}"
            )
        version = int(path_version)
    target = parsed.target
    return ExplainCall(
        name,
        version,
        payload,
        method=parsed.method,
        steps=parsed.steps,
        target_label=target if isinstance(target, str) else None,
        target_index=target if isinstance(target, int) else None,
        top_k=parsed.top_k,
        protocol=PROTOCOL,
    )


def explanation_json(result: Explanation) -> dict[str, Any]:
    out, labels = result.output, result.spec.labels
    items: list[dict[str, Any]] = []
    for row in range(len(out.targets)):
        if row % result.per_item == 0:
            items.append({"targets": []})
        target = int(out.targets[row])
        entry: dict[str, Any] = {
            "index": target,
            "label": labels[target],
            "probability": float(out.probabilities[row, target]),
            "logit": float(out.logit[row]),
            "baseline_logit": float(out.baseline_logit[row]),
            "completeness_gap": float(out.completeness_gap[row]),
        }
        if out.tokens is None:
            entry["attributions"] = out.attributions[row].tolist()
        else:
            kept = out.tokens[row] != ""
            entry["tokens"] = out.tokens[row][kept].tolist()
            entry["scores"] = out.attributions[row][kept].tolist()
        items[-1]["targets"].append(entry)
    return {
        "model": result.spec.name,
        "version": result.spec.version,
        "method": result.method,
        "steps": result.steps,
        "explanations": items,
    }
