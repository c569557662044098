"""The course's three MNIST models. Each takes uint8 (N, 28, 28) images, as served, and returns 10
class probabilities; scaling to [0, 1] is the first layer, so it is part of every exported graph."""

from __future__ import annotations

import keras
from keras import layers

from classify_train.data.mnist import IMAGE_SHAPE, NUM_CLASSES


def _image_input() -> list[keras.layers.Layer]:
    # uint8 in, as on disk and on the wire; Rescaling casts to float32 before dividing.
    return [keras.Input(shape=IMAGE_SHAPE, dtype="uint8", name="images"), layers.Rescaling(1.0 / 255)]


@keras.saving.register_keras_serializable(package="classify_train")
class SmoothPixelMaps(keras.regularizers.Regularizer):
    """Penalises differences between the weights of neighbouring pixels, per class.

    A converged softmax regression fits the rare training digits through isolated pixel weights, so its
    weight maps look like speckle. Neighbouring pixels of a digit stroke carry the same evidence; asking
    their weights to agree (a discrete gradient penalty, as in smoothing splines) keeps the model one
    linear layer, turns the maps into the strokes the course shows, and costs no accuracy."""

    def __init__(self, strength: float, side: int = IMAGE_SHAPE[0]) -> None:
        self.strength = strength
        self.side = side

    def __call__(self, kernel):  # (side * side, classes)
        maps = keras.ops.reshape(kernel, (self.side, self.side, -1))
        down = maps[1:, :, :] - maps[:-1, :, :]
        across = maps[:, 1:, :] - maps[:, :-1, :]
        return self.strength * (keras.ops.sum(down * down) + keras.ops.sum(across * across))

    def get_config(self) -> dict[str, float | int]:
        return {"strength": self.strength, "side": self.side}


def _softmax_regularizer(l2: float, smooth: float) -> keras.regularizers.Regularizer | None:
    penalties: list[keras.regularizers.Regularizer] = []
    if l2:
        penalties.append(keras.regularizers.L2(l2))
    if smooth:
        penalties.append(SmoothPixelMaps(smooth))
    if len(penalties) < 2:
        return penalties[0] if penalties else None
    return _SumOf(penalties)


@keras.saving.register_keras_serializable(package="classify_train")
class _SumOf(keras.regularizers.Regularizer):
    """Two penalties on one kernel (Keras takes a single regularizer per weight)."""

    def __init__(self, penalties: list[keras.regularizers.Regularizer]) -> None:
        self.penalties = penalties

    def __call__(self, kernel):
        return sum(penalty(kernel) for penalty in self.penalties)

    def get_config(self) -> dict[str, list[dict]]:
        return {"penalties": [keras.regularizers.serialize(p) for p in self.penalties]}

    @classmethod
    def from_config(cls, config: dict) -> _SumOf:
        return cls([keras.regularizers.deserialize(p) for p in config["penalties"]])


def build_softmax(zero_init: bool = False, l2: float = 0.0, smooth: float = 0.0) -> keras.Model:
    """Softmax regression: every pixel votes for every digit with one learnt weight (one dense layer).

    ``zero_init`` starts every weight at zero, as the TensorFlow tutorial did (the problem is convex), so
    a pixel that is never inked keeps weight zero; ``l2``, a small penalty, keeps the weights of rarely
    inked border pixels small; ``smooth`` asks neighbouring pixels to vote alike (``SmoothPixelMaps``)."""
    return keras.Sequential(
        [
            *_image_input(),
            layers.Flatten(),
            layers.Dense(
                NUM_CLASSES,
                activation="softmax",
                kernel_initializer="zeros" if zero_init else "glorot_uniform",
                kernel_regularizer=_softmax_regularizer(l2, smooth),
            ),
        ],
        name="mnist_softmax",
    )


def build_mlp(hidden_units: int = 512, hidden_layers: int = 2, dropout: float = 0.2) -> keras.Model:
    """Keras' mnist_mlp example by default (two hidden layers of 512 ReLUs, dropout 0.2); the full recipe
    widens it. Dense layers only: no convolution, no weight sharing."""
    hidden: list[keras.layers.Layer] = []
    for _ in range(hidden_layers):
        hidden += [layers.Dense(hidden_units, activation="relu"), layers.Dropout(dropout)]
    return keras.Sequential(
        [
            *_image_input(),
            layers.Flatten(),
            *hidden,
            layers.Dense(NUM_CLASSES, activation="softmax"),
        ],
        name="mnist_mlp",
    )


def build_cnn(style: str = "course") -> keras.Model:
    """``course``: Keras' mnist_cnn example, conv-conv-pool-dropout-dense-dropout-softmax.
    ``bn``: the full recipe's small convnet, conv-pool-conv-conv-pool with batch norm, dense 128, dropout;
    ~5.5M multiply-adds an image against the course's ~12M, so it trains on 2 cores in minutes."""
    if style == "course":
        body = [
            layers.Conv2D(32, kernel_size=3, activation="relu"),
            layers.Conv2D(64, kernel_size=3, activation="relu"),
            layers.MaxPooling2D(pool_size=2),
            layers.Dropout(0.25),
            layers.Flatten(),
            layers.Dense(128, activation="relu"),
            layers.Dropout(0.5),
        ]
    elif style == "bn":
        body = [
            *_conv_bn(32),  # 26x26
            layers.MaxPooling2D(pool_size=2),  # 13x13
            *_conv_bn(64),  # 11x11
            *_conv_bn(64),  # 9x9
            layers.MaxPooling2D(pool_size=2),  # 4x4
            layers.Flatten(),
            layers.Dense(128, use_bias=False),
            layers.BatchNormalization(),
            layers.Activation("relu"),
            layers.Dropout(0.4),
        ]
    else:
        raise ValueError(f"unknown CNN style {style!r}")
    return keras.Sequential(
        [
            *_image_input(),
            layers.Reshape((*IMAGE_SHAPE, 1)),
            *body,
            layers.Dense(NUM_CLASSES, activation="softmax"),
        ],
        name="mnist_cnn",
    )


def _conv_bn(filters: int) -> list[keras.layers.Layer]:
    # No bias: batch norm's shift replaces it.
    return [
        layers.Conv2D(filters, kernel_size=3, use_bias=False),
        layers.BatchNormalization(),
        layers.Activation("relu"),
    ]
