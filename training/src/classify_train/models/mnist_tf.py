"""The two raw-TensorFlow models as ``tf.Module``s. Each takes uint8 (N, 28, 28) images, as served, and
returns 10 class probabilities; the cast and the division by 255 happen inside, so they are part of the
exported graph exactly as in the Keras models."""

from __future__ import annotations

import tensorflow as tf

from classify_train.data.mnist import IMAGE_SHAPE, NUM_CLASSES

PIXELS = IMAGE_SHAPE[0] * IMAGE_SHAPE[1]


def scaled_pixels(images: tf.Tensor) -> tf.Tensor:
    """uint8 (N, 28, 28) to float32 in [0, 1], the first step of both models."""
    return tf.cast(images, tf.float32) / 255.0


class RawModel(tf.Module):
    """What the training loop, the export and the report need from a raw model."""

    def logits(self, images: tf.Tensor, training: bool = False) -> tf.Tensor:
        raise NotImplementedError

    def __call__(self, images: tf.Tensor, training: bool = False) -> tf.Tensor:
        return tf.nn.softmax(self.logits(images, training=training))

    def describe(self) -> str:
        raise NotImplementedError

    def count_params(self) -> int:
        return int(sum(variable.shape.num_elements() for variable in self.trainable_variables))


class SoftmaxRegression(RawModel):
    """y = softmax(x W + b): the course's first model, W (784x10) and b (10) starting at zero (the problem
    is convex, so zero is as good a start as any and keeps never-inked pixels at weight zero)."""

    def __init__(self) -> None:
        super().__init__(name="mnist_softmax_tf")
        self.weights = tf.Variable(tf.zeros([PIXELS, NUM_CLASSES]), name="W")
        self.bias = tf.Variable(tf.zeros([NUM_CLASSES]), name="b")

    def logits(self, images: tf.Tensor, training: bool = False) -> tf.Tensor:
        flat = tf.reshape(scaled_pixels(images), [-1, PIXELS])
        return tf.matmul(flat, self.weights) + self.bias

    def describe(self) -> str:
        return "uint8 x/255 -> flatten(784) -> matmul W(784x10) + b -> softmax (tf.Module, no Keras)"


def _truncated_normal(shape: list[int], name: str, seed: int) -> tf.Variable:
    # The course's weight_variable: truncated normal, stddev 0.1.
    return tf.Variable(tf.random.truncated_normal(shape, stddev=0.1, seed=seed), name=name)


def _small_positive(size: int, name: str) -> tf.Variable:
    # The course's bias_variable: 0.1, so ReLUs start active.
    return tf.Variable(tf.fill([size], 0.1), name=name)


class CourseCNN(RawModel):
    """The course's low-level convnet ("Deep MNIST"): 5x5 conv 32 + ReLU, 2x2 max pool, 5x5 conv 64 +
    ReLU, 2x2 max pool, dense 1024 + ReLU by matmul, dropout, dense 10 by matmul, softmax."""

    def __init__(
        self, conv1: int = 32, conv2: int = 64, dense: int = 1024, dropout: float = 0.5, seed: int = 0
    ) -> None:
        super().__init__(name="mnist_cnn_tf")
        self.dropout = dropout
        self.shape = (conv1, conv2, dense)
        pooled = (IMAGE_SHAPE[0] // 4) * (IMAGE_SHAPE[1] // 4) * conv2  # 7x7 after two 2x2 pools
        self.conv1_kernel = _truncated_normal([5, 5, 1, conv1], "conv1_kernel", seed)
        self.conv1_bias = _small_positive(conv1, "conv1_bias")
        self.conv2_kernel = _truncated_normal([5, 5, conv1, conv2], "conv2_kernel", seed + 1)
        self.conv2_bias = _small_positive(conv2, "conv2_bias")
        self.dense_weights = _truncated_normal([pooled, dense], "dense_weights", seed + 2)
        self.dense_bias = _small_positive(dense, "dense_bias")
        self.out_weights = _truncated_normal([dense, NUM_CLASSES], "out_weights", seed + 3)
        self.out_bias = _small_positive(NUM_CLASSES, "out_bias")

    def logits(self, images: tf.Tensor, training: bool = False) -> tf.Tensor:
        x = scaled_pixels(images)[..., tf.newaxis]
        x = _conv_relu_pool(x, self.conv1_kernel, self.conv1_bias)  # 14x14
        x = _conv_relu_pool(x, self.conv2_kernel, self.conv2_bias)  # 7x7
        x = tf.reshape(x, [-1, self.dense_weights.shape[0]])
        x = tf.nn.relu(tf.matmul(x, self.dense_weights) + self.dense_bias)
        if training and self.dropout:
            x = tf.nn.dropout(x, rate=self.dropout)
        return tf.matmul(x, self.out_weights) + self.out_bias

    def describe(self) -> str:
        conv1, conv2, dense = self.shape
        return (
            f"uint8 x/255 -> conv2d(5x5, {conv1}) relu -> max_pool2d(2x2) -> conv2d(5x5, {conv2}) relu -> "
            f"max_pool2d(2x2) -> matmul({dense}) relu -> dropout({self.dropout:g}) -> matmul(10) -> softmax "
            "(tf.Module, no Keras)"
        )


def _conv_relu_pool(x: tf.Tensor, kernel: tf.Variable, bias: tf.Variable) -> tf.Tensor:
    # SAME padding keeps 28x28 through the convolutions, so each pool halves it exactly.
    x = tf.nn.relu(tf.nn.conv2d(x, kernel, strides=1, padding="SAME") + bias)
    return tf.nn.max_pool2d(x, ksize=2, strides=2, padding="SAME")
