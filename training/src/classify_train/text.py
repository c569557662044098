"""Text-model preparation: the vocabulary, the token ids, and word embeddings pre-trained on unlabelled
reviews (skip-gram word2vec, gensim) to start the LSTM's embedding layer from.

Only texts go in here, never labels, and never the validation rows: the vocabulary and the embeddings
come from the training rows plus, when the recipe says so, the 50,000 unlabelled reviews.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from classify_train.buckets import concat_padded
from classify_train.models.imdb import ReviewEncoder, build_vectorizer, standardize
from classify_train.recipes import Schedule

EMBEDDINGS_FILE = "embeddings.npy"
_VECTORIZE_BATCH = 2048  # texts per vectorizer call: bounds the ragged intermediate's memory
_STANDARDIZE_BATCH = 4096
_WORD2VEC_WINDOW = 5


@dataclass
class TextPreparation:
    """What text training runs on: the encoder (exported in front of the model), token ids of the
    training and validation rows and, for self-training, of the unlabelled reviews; the pre-trained
    embedding vectors (None without pre-training)."""

    encoder: ReviewEncoder
    ids_train: np.ndarray
    ids_val: np.ndarray
    ids_unlabelled: np.ndarray | None
    vectors: np.ndarray | None


def prepare_text_model(
    model: keras.Model,
    schedule: Schedule,
    x_train: list[str],
    x_val: list[str],
    unlabelled: Callable[[], list[str]] | None,
    *,
    seed: int,
    run_dir: Path | None,
    echo: Callable[[str], None] = print,
) -> TextPreparation:
    """Build the encoder, turn the splits into ids, and (if asked) load pre-trained embeddings."""
    options = schedule.model_options
    wants_unlabelled = (
        schedule.vocabulary_from_unlabelled
        or schedule.pretrain_embedding_epochs
        or schedule.pseudo_label_confidence
    )
    extra = unlabelled() if wants_unlabelled and unlabelled is not None else []
    if wants_unlabelled and not extra:
        echo("no unlabelled reviews found: vocabulary and embeddings come from the training rows only")
    vocabulary_texts = list(x_train) + (extra if schedule.vocabulary_from_unlabelled else [])
    vectorizer = build_vectorizer(vocabulary_texts, options["vocabulary_size"])
    max_words = options["sequence_length"]
    encoder = ReviewEncoder(vectorizer, max_words, options.get("head_words", max_words))
    ids_train, ids_val = encode_texts(encoder, x_train), encode_texts(encoder, x_val)
    ids_unlabelled = encode_texts(encoder, extra) if schedule.pseudo_label_confidence and extra else None
    vectors = None
    if schedule.pretrain_embedding_epochs:
        cache = run_dir / EMBEDDINGS_FILE if run_dir is not None else None
        if cache is not None and cache.is_file():
            vectors = np.load(cache)
        else:
            vectors = pretrain_embeddings(
                vectorizer.get_vocabulary(),
                list(x_train) + extra,
                options["embedding_dim"],
                epochs=schedule.pretrain_embedding_epochs,
                seed=seed,
                echo=echo,
            )
            if cache is not None:
                cache.parent.mkdir(parents=True, exist_ok=True)
                np.save(cache, vectors)
        start_embeddings(model, vectors)
    return TextPreparation(encoder, ids_train, ids_val, ids_unlabelled, vectors)


def start_embeddings(model: keras.Model, vectors: np.ndarray | None) -> None:
    """Start ``model``'s embedding layer from the pre-trained vectors (no-op without them)."""
    if vectors is not None:
        model.get_layer("embedding").set_weights([vectors])


def tokenize(texts: list[str]) -> list[list[str]]:
    """The words the vectorizer sees (same standardization, split on whitespace), whole reviews."""
    words: list[list[str]] = []
    for start in range(0, len(texts), _STANDARDIZE_BATCH):
        batch = standardize(tf.constant(texts[start : start + _STANDARDIZE_BATCH])).numpy()
        words.extend(text.decode("utf-8").split() for text in batch)
    return words


def pretrain_embeddings(
    vocabulary: list[str],
    texts: list[str],
    dimensions: int,
    *,
    epochs: int,
    seed: int,
    echo: Callable[[str], None] = print,
) -> np.ndarray:
    """A (len(vocabulary), dimensions) matrix: skip-gram vectors for the vocabulary's words; small random
    vectors for the padding and out-of-vocabulary ids and for words word2vec did not keep."""
    from gensim.models import Word2Vec

    clock = time.perf_counter()
    sentences = tokenize(texts)
    words = sum(len(sentence) for sentence in sentences)
    echo(
        f"pre-training {dimensions}-d word embeddings on {len(texts)} reviews ({words} words), "
        f"{epochs} epochs"
    )
    word2vec = Word2Vec(
        sentences,
        vector_size=dimensions,
        window=_WORD2VEC_WINDOW,
        min_count=2,
        sg=1,
        negative=5,
        sample=1e-4,
        epochs=epochs,
        # Two threads (this machine's cores) make the vectors depend slightly on thread timing; the
        # training that follows is seeded.
        workers=2,
        seed=seed,
    )
    rng = np.random.default_rng(seed)
    known = word2vec.wv
    scale = float(np.std(known.vectors))
    vectors = rng.normal(0.0, scale, size=(len(vocabulary), dimensions)).astype(np.float32)
    vectors[0] = 0.0  # padding, masked anyway
    hits = 0
    for index, word in enumerate(vocabulary):
        if index >= 2 and word in known.key_to_index:
            vectors[index] = known[word]
            hits += 1
    echo(
        f"pre-trained embeddings: {hits}/{len(vocabulary) - 2} vocabulary words "
        f"in {time.perf_counter() - clock:.0f} s"
    )
    return vectors


def encode_texts(encoder: ReviewEncoder, texts: list[str]) -> np.ndarray:
    """Token ids for all texts, computed once up front so every epoch trains on plain int arrays:
    one row per text, 0-padded to the longest (LengthBuckets cuts each batch to its own longest)."""
    batches = [
        np.asarray(encoder(tf.constant(texts[i : i + _VECTORIZE_BATCH])))
        for i in range(0, len(texts), _VECTORIZE_BATCH)
    ]
    return concat_padded(batches)
