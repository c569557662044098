"""The ``explain_*`` signatures every exported SavedModel carries beside ``serving_default``.

Each takes the served inputs (uint8 images or raw texts), one target class per item (-1: the item's top
class) and, for integrated gradients, the number of steps; each returns, per item, the attributions, the
target, the probabilities, the target's logit at the input and at the baseline, and the completeness gap
``sum(attributions) - (logit - baseline_logit)``. Computing them inside the graph keeps the server
model-agnostic, and texts are split by the exported vectorizer itself, so nobody else ever tokenizes.

- votes (softmax regressions): pixel i's vote for class c is W[i, c] * x_i on the model's own
  preprocessed input (x / 255), so the votes plus the bias are the logit exactly.
- integrated gradients (Sundararajan et al. 2017): the average gradient of the target logit along the
  straight path from the baseline to the input, times (input - baseline); the Riemann trapezoid over
  ``steps`` intervals, every point of every item in one batched call.
- occlusion: how much the target logit drops when a black 4x4 patch covers each place (stride 2),
  spread over the patch's pixels and averaged where patches overlap: a model-agnostic cross-check.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from classify_train.explain_methods import (
    INTEGRATED_GRADIENTS,
    OCCLUSION,
    OCCLUSION_PATCH,
    OCCLUSION_STRIDE,
    VOTES,
    signature_name,
)
from classify_train.models.imdb import head_and_tail, standardize
from classify_train.models.mnist_tf import RawModel, SoftmaxRegression
from classify_train.training import TrainedModel

SIDE = 28
LogitsFunction = Callable[[tf.Tensor], tf.Tensor]


@dataclass(frozen=True)
class ExplainEndpoint:
    """One signature to export: its name, its function and the specs of its inputs."""

    name: str
    function: Callable[..., dict[str, tf.Tensor]]
    input_signature: list[tf.TensorSpec]


def explain_endpoints(trained: TrainedModel, methods: list[str]) -> list[ExplainEndpoint]:
    """The signatures for ``methods`` (explain_methods.methods_for) of a trained model."""
    targets = tf.TensorSpec(shape=[None], dtype=tf.int32, name="targets")
    steps = tf.TensorSpec(shape=[], dtype=tf.int32, name="steps")
    if trained.encoder is not None:
        texts = tf.TensorSpec(shape=[None], dtype=tf.string, name="texts")
        text_ig = text_integrated_gradients(trained)
        return [ExplainEndpoint(signature_name(INTEGRATED_GRADIENTS), text_ig, [texts, targets, steps])]
    images = tf.TensorSpec(shape=[None, SIDE, SIDE], dtype=tf.uint8, name="images")
    logits = image_logits(trained.model)
    builders: dict[str, tuple[Callable[..., dict[str, tf.Tensor]], list[tf.TensorSpec]]] = {
        VOTES: (lambda: image_votes(trained.model), [images, targets]),
        INTEGRATED_GRADIENTS: (lambda: image_integrated_gradients(logits), [images, targets, steps]),
        OCCLUSION: (lambda: image_occlusion(logits), [images, targets]),
    }
    return [ExplainEndpoint(signature_name(m), builders[m][0](), builders[m][1]) for m in methods]


# -- Logits ------------------------------------------------------------------------------------------------


def image_logits(model: keras.Model | RawModel) -> LogitsFunction:
    """float32 pixels (N, 28, 28) on the 0-255 scale -> the logits before the final softmax (N, classes).

    Attributions need the logits (completeness is stated for them); the served graph ends in a softmax.
    Floats go in so gradients can flow; every model's first step divides by 255, which takes them too."""
    if isinstance(model, RawModel):
        return lambda pixels: model.logits(pixels, training=False)
    body, last = _body_and_last_dense(model)

    def logits(pixels: tf.Tensor) -> tf.Tensor:
        x = pixels
        for layer in body:
            x = layer(x, training=False)
        return tf.matmul(x, last.kernel) + last.bias

    return logits


def _body_and_last_dense(model: keras.Model) -> tuple[list[keras.layers.Layer], keras.layers.Dense]:
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    last = layers[-1]
    if not isinstance(last, keras.layers.Dense) or last.activation is not keras.activations.softmax:
        raise ValueError(f"{model.name}: the last layer must be a softmax Dense to take its logits")
    return layers[:-1], last


def _resolve_targets(logits: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
    """-1 means the item's top class; anything else is taken as given (the server checks the range)."""
    top = tf.argmax(logits, axis=1, output_type=tf.int32)
    return tf.where(targets < 0, top, targets)


def _target_logit(logits: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
    return tf.gather(logits, targets, axis=1, batch_dims=1)


def _answer(
    attributions: tf.Tensor, targets: tf.Tensor, logits: tf.Tensor, baseline_logit: tf.Tensor
) -> dict[str, tf.Tensor]:
    logit = _target_logit(logits, targets)
    total = tf.reduce_sum(tf.reshape(attributions, [tf.shape(attributions)[0], -1]), axis=1)
    return {
        "attributions": attributions,
        "targets": targets,
        "probabilities": tf.nn.softmax(logits),
        "logit": logit,
        "baseline_logit": baseline_logit,
        "completeness_gap": total - (logit - baseline_logit),
    }


# -- Images ------------------------------------------------------------------------------------------------


def softmax_weights(model: keras.Model | RawModel) -> tuple[tf.Variable, tf.Variable]:
    """W (784 x classes) and b of a softmax regression, Keras or raw."""
    if isinstance(model, SoftmaxRegression):
        return model.weights, model.bias
    body, last = _body_and_last_dense(model)
    if any(not isinstance(layer, keras.layers.Rescaling | keras.layers.Flatten) for layer in body):
        raise ValueError(f"{model.name} is not a softmax regression: votes need one linear layer")
    return last.kernel, last.bias


def image_votes(model: keras.Model | RawModel) -> Callable[..., dict[str, tf.Tensor]]:
    weights, bias = softmax_weights(model)
    logits_of = image_logits(model)

    def votes(images: tf.Tensor, targets: tf.Tensor) -> dict[str, tf.Tensor]:
        pixels = tf.cast(images, tf.float32)
        # The logits come from the model's own matmul, not from the votes: the test that the votes plus
        # the bias sum to them is then a real check.
        logits = logits_of(pixels)
        targets = _resolve_targets(logits, targets)
        scaled = tf.reshape(pixels / 255.0, [-1, SIDE * SIDE])
        columns = tf.gather(tf.transpose(weights), targets)  # (N, 784): each item's target column
        attributions = tf.reshape(scaled * columns, [-1, SIDE, SIDE])
        return _answer(attributions, targets, logits, tf.gather(bias, targets))  # black image: the bias

    return votes


def trapezoid_weights(steps: tf.Tensor) -> tf.Tensor:
    """Weights of the steps + 1 path points: 1/steps each, half at both ends."""
    steps = tf.maximum(steps, 1)
    inner = tf.ones([steps - 1], tf.float32)
    return tf.concat([[0.5], inner, [0.5]], axis=0) / tf.cast(steps, tf.float32)


def path_gradients(
    logits_of: LogitsFunction, points: tf.Tensor, targets: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
    """Logits at every path point (P * N rows) and the gradient of each row's target logit."""
    repeated = tf.tile(targets, [tf.shape(points)[0] // tf.shape(targets)[0]])
    with tf.GradientTape() as tape:
        tape.watch(points)
        logits = logits_of(points)
        # Rows are independent (inference mode), so one sum gives every row its own gradient.
        chosen = tf.reduce_sum(_target_logit(logits, repeated))
    return logits, tape.gradient(chosen, points)


def image_integrated_gradients(logits_of: LogitsFunction) -> Callable[..., dict[str, tf.Tensor]]:
    def integrated_gradients(images: tf.Tensor, targets: tf.Tensor, steps: tf.Tensor) -> dict[str, tf.Tensor]:
        pixels = tf.cast(images, tf.float32)
        logits = logits_of(pixels)
        targets = _resolve_targets(logits, targets)
        weights = trapezoid_weights(steps)
        alphas = tf.linspace(0.0, 1.0, tf.shape(weights)[0])
        # Baseline black (0): the path points are alpha * x, all items of all points in one call.
        points = tf.reshape(alphas[:, None, None, None] * pixels[None], [-1, SIDE, SIDE])
        path_logits, gradients = path_gradients(logits_of, points, targets)
        gradients = tf.reshape(gradients, [-1, tf.shape(pixels)[0], SIDE, SIDE])
        average = tf.tensordot(weights, gradients, axes=1)
        baseline_logit = _target_logit(path_logits[: tf.shape(pixels)[0]], targets)
        return _answer(pixels * average, targets, logits, baseline_logit)

    return integrated_gradients


def occlusion_masks() -> np.ndarray:
    """(positions, 28, 28) float32: 1 where the patch at each position covers the image."""
    starts = range(0, SIDE - OCCLUSION_PATCH + 1, OCCLUSION_STRIDE)
    masks = []
    for top in starts:
        for left in starts:
            mask = np.zeros((SIDE, SIDE), np.float32)
            mask[top : top + OCCLUSION_PATCH, left : left + OCCLUSION_PATCH] = 1.0
            masks.append(mask)
    return np.stack(masks)


def image_occlusion(logits_of: LogitsFunction) -> Callable[..., dict[str, tf.Tensor]]:
    masks = tf.constant(occlusion_masks())
    # Each pixel's share of a patch's drop, averaged over the patches that cover it.
    coverage = tf.constant(np.maximum(occlusion_masks().sum(axis=0), 1.0))
    positions = int(masks.shape[0])

    def occlusion(images: tf.Tensor, targets: tf.Tensor) -> dict[str, tf.Tensor]:
        pixels = tf.cast(images, tf.float32)
        logits = logits_of(pixels)
        targets = _resolve_targets(logits, targets)
        covered = tf.reshape((1.0 - masks)[:, None] * pixels[None], [-1, SIDE, SIDE])
        dropped = _target_logit(logits_of(covered), tf.tile(targets, [positions]))
        drops = _target_logit(logits, targets)[None] - tf.reshape(dropped, [positions, -1])  # (P, N)
        spread = tf.tensordot(drops, masks, axes=[[0], [0]]) / float(OCCLUSION_PATCH**2)
        baseline_logit = _target_logit(logits_of(tf.zeros_like(pixels)), targets)
        return _answer(spread / coverage, targets, logits, baseline_logit)

    return occlusion


# -- Texts -------------------------------------------------------------------------------------------------


def text_integrated_gradients(trained: TrainedModel) -> Callable[..., dict[str, tf.Tensor]]:
    """Integrated gradients over the token embeddings from the padding token's embedding, summed over
    each token's embedding dimensions; the tokens come back beside their scores."""
    encoder, model = trained.encoder, trained.model
    embedding = model.get_layer("embedding")
    features_of = lstm_features(model)
    _, last = _body_and_last_dense(model)

    def logits_of(vectors: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
        return tf.matmul(features_of(vectors, mask), last.kernel) + last.bias

    def integrated_gradients(texts: tf.Tensor, targets: tf.Tensor, steps: tf.Tensor) -> dict[str, tf.Tensor]:
        ids = encoder(texts)
        mask = tf.not_equal(ids, 0)
        vectors = embedding(ids)
        baseline = tf.broadcast_to(embedding.embeddings[0], tf.shape(vectors))
        logits = logits_of(vectors, mask)
        targets = _resolve_targets(logits, targets)
        weights = trapezoid_weights(steps)
        points = tf.shape(weights)[0]
        alphas = tf.linspace(0.0, 1.0, points)[:, None, None, None]
        path = tf.reshape(baseline[None] + alphas * (vectors - baseline)[None], _merge_first(vectors))
        # The mask stays the input's along the path: the baseline is "every word replaced by padding",
        # as long as the review, so the LSTM runs the same steps at every point.
        path_mask = tf.tile(mask, [points, 1])
        path_logits, gradients = path_gradients(lambda p: logits_of(p, path_mask), path, targets)
        gradients = tf.reshape(gradients, tf.concat([[points], tf.shape(vectors)], axis=0))
        average = tf.tensordot(weights, gradients, axes=1)
        scores = tf.reduce_sum((vectors - baseline) * average, axis=2)
        baseline_logit = _target_logit(path_logits[: tf.shape(vectors)[0]], targets)
        answer = _answer(scores, targets, logits, baseline_logit)
        answer["tokens"] = review_tokens(encoder, texts)
        return answer

    return integrated_gradients


def _merge_first(vectors: tf.Tensor) -> tf.Tensor:
    shape = tf.shape(vectors)
    return tf.concat([[-1], shape[1:]], axis=0)


def review_tokens(encoder: Any, texts: tf.Tensor) -> tf.Tensor:
    """(N, T) strings: the words behind the ids the encoder produces, position for position ("" pads).

    The vectorizer splits its standardized text on whitespace, one id per word, and the encoder keeps a
    head and a tail of long reviews; the same steps on the words give the same positions."""
    words = tf.strings.split(standardize(texts))
    return head_and_tail(words, encoder.max_words, encoder.head_words, padding="")


def lstm_features(model: keras.Model) -> Callable[[tf.Tensor, tf.Tensor], tf.Tensor]:
    """(embedded tokens, mask) -> the input of the final Dense, walking build_lstm's layers in order.

    The served model starts from ids and derives the mask from them; integrated gradients start from
    points between embeddings, so the layers after the embedding are called with the mask explicitly."""
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    if layers[0].name != "embedding":
        raise ValueError(f"{model.name}: expected the embedding layer first, found {layers[0].name}")
    middle = layers[1:-1]

    def features(vectors: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
        with tf.name_scope(model.name):  # "_masked_max" is no valid root scope name, as a child it is
            return _run_middle(vectors, mask)

    def _run_middle(vectors: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
        x, pooled = vectors, {}
        for layer in middle:
            if isinstance(layer, keras.layers.Dropout | keras.layers.SpatialDropout1D):
                continue  # identity at inference
            if isinstance(layer, keras.layers.LSTM | keras.layers.Bidirectional):
                x = layer(x, mask=mask, training=False)
            elif isinstance(layer, keras.layers.Concatenate):
                x = layer([pooled[source] for source in _inputs_of(layer)])
            else:  # the poolings over time, both reading the LSTM's outputs
                pooled[layer] = layer(x, mask=mask)
        return x

    return features


def _inputs_of(layer: keras.layers.Layer) -> list[keras.layers.Layer]:
    """The layers feeding ``layer``, in its input order (model.layers need not list them that way)."""
    return [tensor._keras_history.operation for tensor in layer._inbound_nodes[0].input_tensors]
