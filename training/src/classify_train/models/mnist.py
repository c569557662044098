"""The course's three MNIST models. Each takes uint8 (N, 28, 28) images, as served, and returns 10
class probabilities; scaling to [0, 1] is the first layer, so it is part of every exported graph."""

from __future__ import annotations

import keras
from keras import layers

from classify_train.data.mnist import IMAGE_SHAPE, NUM_CLASSES


def _image_input() -> list[keras.layers.Layer]:
    # uint8 in, as on disk and on the wire; Rescaling casts to float32 before dividing.
    return [keras.Input(shape=IMAGE_SHAPE, dtype="uint8", name="images"), layers.Rescaling(1.0 / 255)]


def build_softmax(zero_init: bool = False, l2: float = 0.0) -> keras.Model:
    """Softmax regression: every pixel votes for every digit with one learnt weight (one dense layer).

    ``zero_init`` starts every weight at zero, as the TensorFlow tutorial did (the problem is convex), so
    a pixel that is never inked keeps weight zero; ``l2``, a small penalty, keeps the weights of rarely
    inked border pixels small too (Adam would otherwise blow them up), so the weight maps show strokes."""
    return keras.Sequential(
        [
            *_image_input(),
            layers.Flatten(),
            layers.Dense(
                NUM_CLASSES,
                activation="softmax",
                kernel_initializer="zeros" if zero_init else "glorot_uniform",
                kernel_regularizer=keras.regularizers.L2(l2) if l2 else None,
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
