"""Which explanation methods each model exports, as plain data (no TensorFlow): model.json lists them and
the CLI names them without loading a graph. The graphs themselves are built by explain_signatures.py."""

from __future__ import annotations

from typing import Any

from classify_train.recipes import Recipe

# Each method is a signature of its own in the SavedModel, beside serving_default, so a server learns
# what a version can explain by listing its signatures, and adding a method never changes another's.
SIGNATURE_PREFIX = "explain_"
VOTES = "votes"
INTEGRATED_GRADIENTS = "integrated_gradients"
OCCLUSION = "occlusion"
# Riemann-trapezoid steps of integrated gradients when the caller names none.
DEFAULT_STEPS = 32
# Occlusion: a black square of this side slides over the image by this stride (13 x 13 positions).
OCCLUSION_PATCH = 4
OCCLUSION_STRIDE = 2
# The command that adds the signatures to a version exported before they existed.
REEXPORT_COMMAND = "classify-train export-signatures"


def signature_name(method: str) -> str:
    return SIGNATURE_PREFIX + method


def methods_for(recipe: Recipe) -> list[str]:
    """The methods, best first: the first is what ``auto`` picks.

    Softmax regressions are explained exactly by their votes; every other image model by integrated
    gradients, with occlusion as the model-agnostic cross-check; texts by integrated gradients over
    the token embeddings."""
    if recipe.dataset == "imdb":
        return [INTEGRATED_GRADIENTS]
    softmax = recipe.builder in ("mnist:build_softmax", "mnist_tf:SoftmaxRegression")
    return [VOTES, OCCLUSION] if softmax else [INTEGRATED_GRADIENTS, OCCLUSION]


def describe_explain(recipe: Recipe) -> dict[str, Any]:
    """model.json's ``explain`` section."""
    methods = methods_for(recipe)
    return {
        "methods": {method: signature_name(method) for method in methods},
        "default_method": methods[0],
        "default_steps": DEFAULT_STEPS,
        "baseline": "the padding token's embedding" if recipe.dataset == "imdb" else "a black image",
    }
