"""The IMDb sentiment model: a text encoder (raw reviews to token ids; kept apart so training can run on
ids) and an embedding + LSTM classifier over those ids returning [negative, positive] probabilities.

Batches are as long as their longest review (up to a cap), not a fixed length: an LSTM's cost is its
number of steps, and padding every review to the cap made most of the steps padding (median review 172
words, cap 600).
"""

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


def build_vectorizer(texts: list[str], vocabulary_size: int) -> layers.TextVectorization:
    """A TextVectorization layer (ragged ids, every word kept) whose vocabulary is learnt from ``texts``
    (never validation rows)."""
    vectorizer = layers.TextVectorization(
        max_tokens=vocabulary_size, standardize=standardize, output_mode="int", ragged=True
    )
    vectorizer.adapt(tf.data.Dataset.from_tensor_slices(texts).batch(1024))
    return vectorizer


def head_and_tail(ids: tf.RaggedTensor, max_words: int, head_words: int, padding: int | str = 0) -> tf.Tensor:
    """Dense ids, 0-padded to the batch's longest review: a review over ``max_words`` words keeps its first
    ``head_words`` and its last ``max_words - head_words`` (the verdict is often at the end). The explain
    signature runs the same steps on the words themselves (``padding=""``) to line them up with the ids."""
    tail_words = max_words - head_words
    if tail_words > 0:
        ids = tf.concat([ids[:, :head_words], ids[:, head_words:][:, -tail_words:]], axis=1)
    else:
        ids = ids[:, :max_words]
    dense = ids.to_tensor(default_value=padding)
    # An LSTM needs at least one step: a batch of empty reviews gets one (masked) padding step.
    return tf.pad(dense, [[0, 0], [0, tf.maximum(0, 1 - tf.shape(dense)[1])]], constant_values=padding)


class ReviewEncoder(layers.Layer):
    """Raw review texts in, token ids out (see ``head_and_tail``); the exported graph's first step."""

    def __init__(
        self, vectorizer: layers.TextVectorization, max_words: int, head_words: int, **kwargs: object
    ) -> None:
        super().__init__(**kwargs)
        if not 0 < head_words <= max_words:
            raise ValueError(f"head_words must be in 1..{max_words} (max_words), not {head_words}")
        self.vectorizer = vectorizer
        self.max_words = max_words
        self.head_words = head_words

    def call(self, texts: tf.Tensor) -> tf.Tensor:
        return head_and_tail(self.vectorizer(texts), self.max_words, self.head_words)

    def describe(self) -> str:
        kept = (
            f"first {self.max_words} words"
            if self.head_words == self.max_words
            else f"first {self.head_words} + last {self.max_words - self.head_words} words"
        )
        return f"TextVectorization({self.vectorizer.get_config()['max_tokens']} tokens, {kept})"


def build_lstm(
    vocabulary_size: int,
    sequence_length: int,
    embedding_dim: int,
    lstm_units: int,
    *,
    bidirectional: bool = False,
    pooling: str = "last",
    dropout: float = 0.0,
    head_words: int | None = None,
) -> keras.Model:
    """Embedding (id 0 = padding, masked) then an LSTM then a softmax over [negative, positive].

    ``pooling="last"`` (the course's model) classifies from the LSTM's final state; ``"max-mean"`` from the
    maximum and the mean of its outputs over all words, which lets a strong phrase anywhere in a long
    review count. ``bidirectional`` runs a second LSTM from the end of the review backwards.
    """
    # ``sequence_length`` and ``head_words`` shape the ReviewEncoder in front; the model takes any length.
    del sequence_length, head_words
    ids = keras.Input(shape=(None,), dtype="int64", name="token_ids")
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
