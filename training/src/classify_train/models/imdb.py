"""The IMDb sentiment model: a text vectorizer (kept apart so training can run on token ids) and an
embedding + LSTM classifier over those ids returning [negative, positive] probabilities."""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers

NUM_CLASSES = 2
# Reviews break lines with literal "<br />" tags; left in, "br" would be one of the commonest tokens.
_HTML_BREAK = r"<br\s*/?>"
_PUNCTUATION = r"[!\"#$%&()\*\+,\-\./:;<=>?@\[\\\]\^_`{|}~']"


def standardize(texts: tf.Tensor) -> tf.Tensor:
    """Lowercase, turn HTML line breaks into spaces, drop punctuation."""
    lowered = tf.strings.lower(texts)
    no_breaks = tf.strings.regex_replace(lowered, _HTML_BREAK, " ")
    return tf.strings.regex_replace(no_breaks, _PUNCTUATION, "")


def build_vectorizer(
    texts: list[str], vocabulary_size: int, sequence_length: int
) -> layers.TextVectorization:
    """A TextVectorization layer whose vocabulary is learnt from ``texts`` (the training rows only)."""
    vectorizer = layers.TextVectorization(
        max_tokens=vocabulary_size,
        standardize=standardize,
        output_mode="int",
        output_sequence_length=sequence_length,
    )
    vectorizer.adapt(tf.data.Dataset.from_tensor_slices(texts).batch(1024))
    return vectorizer


def build_lstm(
    vocabulary_size: int,
    sequence_length: int,
    embedding_dim: int,
    lstm_units: int,
    *,
    bidirectional: bool = False,
    pooling: str = "last",
    dropout: float = 0.0,
) -> keras.Model:
    """Embedding (id 0 = padding, masked) then an LSTM then a softmax over [negative, positive].

    ``pooling="last"`` (the course's model) classifies from the LSTM's final state; ``"max-mean"`` from the
    maximum and the mean of its outputs over all words, which lets a strong phrase anywhere in a long
    review count. ``bidirectional`` runs a second LSTM from the end of the review backwards.
    """
    ids = keras.Input(shape=(sequence_length,), dtype="int64", name="token_ids")
    x = layers.Embedding(vocabulary_size, embedding_dim, mask_zero=True, name="embedding")(ids)
    if dropout:
        x = layers.SpatialDropout1D(dropout)(x)
    recurrent = layers.LSTM(lstm_units, return_sequences=pooling != "last")
    x = layers.Bidirectional(recurrent)(x) if bidirectional else recurrent(x)
    if pooling == "max-mean":
        x = layers.Concatenate()([_MaskedMax()(x), layers.GlobalAveragePooling1D()(x)])
    elif pooling != "last":
        raise ValueError(f"unknown pooling {pooling!r}")
    if dropout:
        x = layers.Dropout(dropout)(x)
    probabilities = layers.Dense(NUM_CLASSES, activation="softmax")(x)
    return keras.Model(ids, probabilities, name="imdb_lstm")


class _MaskedMax(layers.Layer):
    """Maximum over time of the real (unmasked) steps only."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs: tf.Tensor, mask: tf.Tensor | None = None) -> tf.Tensor:
        if mask is not None:
            inputs = tf.where(mask[..., tf.newaxis], inputs, tf.fill(tf.shape(inputs), -1e9))
        return tf.reduce_max(inputs, axis=1)

    def compute_mask(self, inputs: tf.Tensor, mask: tf.Tensor | None = None) -> None:
        return None

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return (input_shape[0], input_shape[2])
