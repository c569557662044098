"""The native Explain RPC's messages: ExplainRequest to an ExplainCall, an Explanation to ExplainResponse."""

from __future__ import annotations

import numpy as np

from classify_client.wire.proto.classify.v1 import classify_pb2 as pb
from classify_server.serving.explain_plane import ExplainCall, Explanation
from classify_server.serving.validation import ImagePayload, Payload, TextPayload

METHOD_NAMES = {
    pb.EXPLAIN_METHOD_AUTO: "auto",
    pb.EXPLAIN_METHOD_VOTES: "votes",
    pb.EXPLAIN_METHOD_INTEGRATED_GRADIENTS: "integrated_gradients",
    pb.EXPLAIN_METHOD_OCCLUSION: "occlusion",
}


def explain_call(request: pb.ExplainRequest, time_remaining: float | None) -> ExplainCall:
    target = request.WhichOneof("target")
    return ExplainCall(
        model=request.model,
        version=request.version or None,
        version_label=request.version_label,
        payload=payload_of(request),
        # An enum value this server does not know (a newer client) is named as a number in the error.
        method=METHOD_NAMES.get(request.method, f"method #{request.method}"),
        steps=request.steps,
        target_label=request.target_label if target == "target_label" else None,
        target_index=request.target_index if target == "target_index" else None,
        top_k=request.top_k or 1,
        time_remaining=time_remaining,
    )


def payload_of(request: pb.ClassifyRequest | pb.ExplainRequest) -> Payload | None:
    """The input oneof of a native Classify or Explain request (both carry the same encodings)."""
    kind = request.WhichOneof("input")
    if kind == "images":
        return ImagePayload(request.images.data, tuple(request.images.shape))
    if kind == "texts":
        return TextPayload(tuple(request.texts.texts))
    return None


def explain_response(request: pb.ExplainRequest, result: Explanation) -> pb.ExplainResponse:
    response = pb.ExplainResponse(
        model=result.spec.name,
        version=result.spec.version,
        request_id=request.request_id,
        method=result.method,
        steps=result.steps,
    )
    out = result.output
    labels = result.spec.labels
    rows = len(out.targets)
    probability = out.probabilities[np.arange(rows), out.targets]
    for row in range(rows):
        if row % result.per_item == 0:
            item = response.items.add()
        target = int(out.targets[row])
        attribution = item.targets.add(
            target_index=target,
            target_label=labels[target],
            probability=float(probability[row]),
            logit=float(out.logit[row]),
            baseline_logit=float(out.baseline_logit[row]),
            completeness_gap=float(out.completeness_gap[row]),
        )
        if out.tokens is None:
            attribution.map = out.attributions[row].astype("<f4", copy=False).tobytes()
        else:
            kept = out.tokens[row] != ""
            attribution.tokens.extend(out.tokens[row][kept].tolist())
            attribution.scores.extend(out.attributions[row][kept].tolist())
    return response
