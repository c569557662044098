"""The course's three MNIST models. Each takes uint8 (N, 28, 28) images, as served, and returns 10
class probabilities; scaling to [0, 1] is the first layer, so it is part of every exported graph."""

from __future__ import annotations

import keras
from keras import layers

from classify_train.data.mnist import IMAGE_SHAPE, NUM_CLASSES


def _image_input() -> list[keras.layers.Layer]:
    # uint8 in, as on disk and on the wire; Rescaling casts to float32 before dividing.
    return [keras.Input(shape=IMAGE_SHAPE, dtype="uint8", name="images"), layers.Rescaling(1.0 / 255)]


def build_softmax() -> keras.Model:
    """Softmax regression: every pixel votes for every digit with one learnt weight (one dense layer)."""
    return keras.Sequential(
        [*_image_input(), layers.Flatten(), layers.Dense(NUM_CLASSES, activation="softmax")],
        name="mnist_softmax",
    )


def build_mlp() -> keras.Model:
    """Keras' mnist_mlp example: two hidden layers of 512 ReLUs with dropout."""
    return keras.Sequential(
        [
            *_image_input(),
            layers.Flatten(),
            layers.Dense(512, activation="relu"),
            layers.Dropout(0.2),
            layers.Dense(512, activation="relu"),
            layers.Dropout(0.2),
            layers.Dense(NUM_CLASSES, activation="softmax"),
        ],
        name="mnist_mlp",
    )


def build_cnn() -> keras.Model:
    """Keras' mnist_cnn example: conv-conv-pool-dropout-dense-dropout-softmax."""
    return keras.Sequential(
        [
            *_image_input(),
            layers.Reshape((*IMAGE_SHAPE, 1)),
            layers.Conv2D(32, kernel_size=3, activation="relu"),
            layers.Conv2D(64, kernel_size=3, activation="relu"),
            layers.MaxPooling2D(pool_size=2),
            layers.Dropout(0.25),
            layers.Flatten(),
            layers.Dense(128, activation="relu"),
            layers.Dropout(0.5),
            layers.Dense(NUM_CLASSES, activation="softmax"),
        ],
        name="mnist_cnn",
    )
