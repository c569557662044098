"""The text model's variable-length path: reviews cut to head + tail, batches as long as their longest
review, and answers that do not depend on what a review was batched with."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from classify_train.buckets import LengthBuckets  # noqa: E402
from classify_train.models.imdb import ReviewEncoder, build_lstm, build_vectorizer, head_and_tail  # noqa: E402


def ragged(rows: list[list[int]]) -> tf.RaggedTensor:
    return tf.ragged.constant(rows, dtype=tf.int64, ragged_rank=1)


def test_long_reviews_keep_their_head_and_tail_and_short_ones_stay_whole() -> None:
    ids = ragged([list(range(1, 11)), [5, 6], [], [1, 2, 3, 4, 5]])
    dense = head_and_tail(ids, max_words=5, head_words=2).numpy()
    assert dense.tolist() == [[1, 2, 8, 9, 10], [5, 6, 0, 0, 0], [0, 0, 0, 0, 0], [1, 2, 3, 4, 5]]


def test_head_only_cut_and_batch_width_is_the_longest_review() -> None:
    dense = head_and_tail(ragged([[1, 2, 3, 4], [7, 8]]), max_words=3, head_words=3).numpy()
    assert dense.tolist() == [[1, 2, 3], [7, 8, 0]]
    assert head_and_tail(ragged([[4], [5, 6]]), max_words=600, head_words=150).shape == (2, 2)


def test_a_batch_of_empty_reviews_still_has_one_step() -> None:
    empty = tf.RaggedTensor.from_row_lengths(tf.zeros([0], tf.int64), [0, 0])
    assert head_and_tail(empty, max_words=10, head_words=4).shape == (2, 1)


def test_the_encoder_refuses_a_head_longer_than_the_cap() -> None:
    vectorizer = build_vectorizer(["a b c"], vocabulary_size=10)
    with pytest.raises(ValueError, match=r"head_words must be in 1\.\.5"):
        ReviewEncoder(vectorizer, max_words=5, head_words=6)


def padded_ids(lengths: list[int], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ids = np.zeros((len(lengths), max(lengths)), np.int64)
    for row, length in enumerate(lengths):
        ids[row, :length] = rng.integers(1, 50, size=length)
    return ids


def test_length_buckets_cover_every_row_once_per_epoch_in_batches_cut_to_their_longest() -> None:
    lengths = list(np.random.default_rng(1).integers(0, 90, size=1000))
    ids, labels = padded_ids(lengths), np.arange(1000)
    buckets = LengthBuckets(ids, labels, batch_size=16, shuffle=True, seed=3)
    orders = []
    for _ in range(2):
        seen = []
        for index in range(len(buckets)):
            batch, batch_labels = buckets[index]
            assert batch.shape[1] == max([1, *(lengths[i] for i in batch_labels)])
            np.testing.assert_array_equal(batch, ids[batch_labels, : batch.shape[1]])
            seen.extend(batch_labels.tolist())
        assert sorted(seen) == list(range(1000))
        orders.append(seen)
        buckets.on_epoch_end()
    assert orders[0] != orders[1]  # a new draw every epoch


def test_validation_buckets_are_sorted_and_fixed() -> None:
    lengths = [5, 1, 9, 3, 7]
    buckets = LengthBuckets(padded_ids(lengths), np.arange(5), batch_size=2, shuffle=False, seed=0)
    widths = [buckets[i][0].shape[1] for i in range(len(buckets))]
    assert widths == [3, 7, 9]
    buckets.on_epoch_end()
    assert [buckets[i][0].shape[1] for i in range(len(buckets))] == widths


def test_an_answer_does_not_depend_on_the_reviews_batched_with_it() -> None:
    """Padding to the batch's longest review is masked: a short review alone and beside a long one
    gets the same probabilities (the server merges requests into one batch)."""
    model = build_lstm(50, 100, 8, 6, bidirectional=True, pooling="max-mean")
    batch = padded_ids([4, 60, 17])
    together = model.predict(batch, verbose=0)
    alone = np.concatenate([model.predict(batch[i : i + 1, : [4, 60, 17][i]], verbose=0) for i in range(3)])
    np.testing.assert_allclose(together, alone, atol=1e-5)
