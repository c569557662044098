"""Models made of several members side by side (``members`` > 1 in a recipe): each member is trained on
its own loss, as if alone, and the answer is the mean of their probabilities. Such a model's Keras output
is (rows, members, classes); everything that turns it into an answer goes through ``served``.

Averaging independently trained networks is the classic way to cut the variance of a small model: here
a mistake has to be shared by most members to survive.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf


def is_ensemble(model: keras.Model) -> bool:
    return len(model.outputs[0].shape) == 3


def served(outputs: tf.Tensor) -> tf.Tensor:
    """The probabilities to answer with: the members' mean, or the outputs of a single model."""
    return tf.reduce_mean(outputs, axis=1) if len(outputs.shape) == 3 else outputs


def member_crossentropy(labels: tf.Tensor, outputs: tf.Tensor) -> tf.Tensor:
    """Each member's cross-entropy against the same labels, averaged: members learn independently."""
    labels = tf.reshape(tf.cast(labels, tf.int64), [-1, 1])
    labels = tf.broadcast_to(labels, tf.shape(outputs)[:2])
    return tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, outputs), axis=-1)


def served_accuracy(labels: tf.Tensor, outputs: tf.Tensor) -> tf.Tensor:
    """Accuracy of the answer (the members' mean), per row."""
    return keras.metrics.sparse_categorical_accuracy(labels, served(outputs))


def objective(model: keras.Model) -> dict[str, Any]:
    """``compile`` arguments: the loss and the "accuracy" metric right for the model's output."""
    if not is_ensemble(model):
        return {"loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"]}
    accuracy = keras.metrics.MeanMetricWrapper(served_accuracy, name="accuracy")
    return {"loss": member_crossentropy, "metrics": [accuracy]}
