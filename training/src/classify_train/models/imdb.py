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
    vocabulary_size: int, sequence_length: int, embedding_dim: int, lstm_units: int
) -> keras.Model:
    """Embedding (id 0 = padding, masked) then one LSTM then a softmax over [negative, positive]."""
    return keras.Sequential(
        [
            keras.Input(shape=(sequence_length,), dtype="int64", name="token_ids"),
            layers.Embedding(vocabulary_size, embedding_dim, mask_zero=True),
            layers.LSTM(lstm_units),
            layers.Dense(NUM_CLASSES, activation="softmax"),
        ],
        name="imdb_lstm",
    )
