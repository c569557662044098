"""The update rules the raw-TensorFlow models train with, written with tf ops on ``tf.Variable``s: plain
gradient descent (the course's softmax) and Adam (the course's CNN used ``AdamOptimizer(1e-4)``). Their
state is ``tf.Variable``s on a ``tf.Module``, so ``tf.train.Checkpoint`` saves and restores it with the
model."""

from __future__ import annotations

import math
from collections.abc import Sequence

import tensorflow as tf


class LearningRate(tf.Module):
    """A constant rate, or (``cosine``) a linear warm-up over ``warmup_steps`` from a tenth of the rate,
    then a cosine decay to zero at ``total_steps``: the schedule the Keras recipes use."""

    def __init__(self, rate: float, schedule: str, total_steps: int, warmup_steps: int) -> None:
        super().__init__(name="learning_rate")
        if schedule not in {"constant", "cosine"}:
            raise ValueError(f"unknown learning rate schedule {schedule!r}; expected constant or cosine")
        self.rate, self.schedule = rate, schedule
        self.total_steps, self.warmup_steps = max(1, total_steps), max(0, min(warmup_steps, total_steps))

    def __call__(self, step: tf.Tensor) -> tf.Tensor:
        if self.schedule == "constant":
            return tf.constant(self.rate, tf.float32)
        step = tf.cast(step, tf.float32)
        warmup = float(max(1, self.warmup_steps))
        warming = self.rate / 10 + (self.rate - self.rate / 10) * step / warmup
        progress = tf.clip_by_value(
            (step - self.warmup_steps) / float(max(1, self.total_steps - self.warmup_steps)), 0.0, 1.0
        )
        decaying = 0.5 * self.rate * (1.0 + tf.cos(math.pi * progress))
        return tf.where(step < self.warmup_steps, warming, decaying)


class GradientDescent(tf.Module):
    """w <- w - rate * dL/dw."""

    def __init__(self, learning_rate: LearningRate) -> None:
        super().__init__(name="gradient_descent")
        self.learning_rate = learning_rate
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")

    def apply(self, gradients: Sequence[tf.Tensor], variables: Sequence[tf.Variable]) -> None:
        rate = self.learning_rate(self.step)
        for gradient, variable in zip(gradients, variables, strict=True):
            variable.assign_sub(rate * gradient)
        self.step.assign_add(1)


class Adam(tf.Module):
    """Kingma and Ba's Adam: per-weight steps from running means of the gradient and of its square,
    bias-corrected for their zero start."""

    def __init__(
        self,
        learning_rate: LearningRate,
        variables: Sequence[tf.Variable],
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
    ) -> None:
        super().__init__(name="adam")
        self.learning_rate = learning_rate
        self.beta_1, self.beta_2, self.epsilon = beta_1, beta_2, epsilon
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.means = [_slot(variable, "mean") for variable in variables]
        self.squares = [_slot(variable, "square") for variable in variables]

    def apply(self, gradients: Sequence[tf.Tensor], variables: Sequence[tf.Variable]) -> None:
        rate = self.learning_rate(self.step)
        self.step.assign_add(1)
        t = tf.cast(self.step, tf.float32)
        corrected = rate * tf.sqrt(1.0 - self.beta_2**t) / (1.0 - self.beta_1**t)
        for gradient, variable, mean, square in zip(
            gradients, variables, self.means, self.squares, strict=True
        ):
            mean.assign(self.beta_1 * mean + (1.0 - self.beta_1) * gradient)
            square.assign(self.beta_2 * square + (1.0 - self.beta_2) * tf.square(gradient))
            variable.assign_sub(corrected * mean / (tf.sqrt(square) + self.epsilon))


def _slot(variable: tf.Variable, kind: str) -> tf.Variable:
    name = variable.name.split(":")[0]
    return tf.Variable(tf.zeros_like(variable), trainable=False, name=f"{name}/{kind}")


def make_optimizer(
    name: str, learning_rate: LearningRate, variables: Sequence[tf.Variable]
) -> GradientDescent | Adam:
    if name == "gradient-descent":
        return GradientDescent(learning_rate)
    if name == "adam":
        return Adam(learning_rate, variables)
    raise ValueError(f"unknown raw-TensorFlow optimizer {name!r}; expected gradient-descent or adam")
