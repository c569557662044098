"""A one-line architecture description for model.json, read from the built layers so it cannot drift."""

from __future__ import annotations

from typing import TYPE_CHECKING

import keras

if TYPE_CHECKING:
    from classify_train.models.imdb import ReviewEncoder


def describe_architecture(model: keras.Model, encoder: ReviewEncoder | None = None) -> str:
    parts = [encoder.describe()] if encoder is not None else []
    parts.extend(
        _describe_layer(layer) for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)
    )
    return " -> ".join(parts)


def _describe_layer(layer: keras.layers.Layer) -> str:
    if isinstance(layer, keras.layers.Bidirectional):
        return f"Bidirectional({_describe_layer(layer.forward_layer)})"
    config = layer.get_config()
    kind = type(layer).__name__.lstrip("_")
    details: list[str] = []
    if kind == "Rescaling":
        details = [_fraction(config["scale"])]
    elif kind in {"Dense", "LSTM"}:
        details = [str(config["units"])] + ([config["activation"]] if kind == "Dense" else [])
    elif kind == "Conv2D":
        height, width = config["kernel_size"]
        details = [str(config["filters"]), f"{height}x{width}", config["activation"]]
    elif kind == "MaxPooling2D":
        height, width = config["pool_size"]
        details = [f"{height}x{width}"]
    elif kind == "Activation":
        details = [str(config["activation"])]
    elif kind in {"Dropout", "SpatialDropout1D"}:
        details = [f"{config['rate']:g}"]
    elif kind == "Reshape":
        details = ["x".join(str(d) for d in config["target_shape"])]
    elif kind == "Embedding":
        details = [str(config["input_dim"]), str(config["output_dim"])] + (
            ["mask_zero"] if config["mask_zero"] else []
        )
    return f"{kind}({', '.join(details)})" if details else kind


def _fraction(scale: float) -> str:
    """1/255 rather than 0.00392157: the number a reader recognises."""
    inverse = round(1 / scale) if scale else 0
    return f"1/{inverse}" if inverse and abs(scale * inverse - 1) < 1e-6 else f"{scale:g}"
