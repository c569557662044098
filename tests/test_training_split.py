"""The validation split: deterministic, disjoint from training, stratified, and checksummed."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from classify_train.data.datadir import DATA_DIR_ENV
from classify_train.data.dataset import Dataset
from classify_train.data.split import DEFAULT_SEED, carve_validation, class_quotas, subset
from classify_train.datasets import load_dataset
from classify_train.recipes import RECIPES

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", params=["mnist", "imdb"])
def dataset(request: pytest.FixtureRequest) -> Dataset:
    data_dir = Path(os.environ.get(DATA_DIR_ENV) or REPO_ROOT.parent / "shared" / "data")
    return load_dataset(request.param, data_dir)


def test_split_is_the_same_every_time_and_changes_with_the_seed(dataset: Dataset) -> None:
    first, again = carve_validation(dataset.labels), carve_validation(dataset.labels)
    np.testing.assert_array_equal(first.validation_indices, again.validation_indices)
    assert first.describe(dataset) == again.describe(dataset)
    other = carve_validation(dataset.labels, seed=DEFAULT_SEED + 1)
    assert not np.array_equal(first.validation_indices, other.validation_indices)


def test_split_is_ten_percent_disjoint_and_covers_every_row(dataset: Dataset) -> None:
    split = carve_validation(dataset.labels)
    assert len(split.validation_indices) == {"mnist": 6000, "imdb": 2500}[dataset.name]
    assert np.intersect1d(split.train_indices, split.validation_indices).size == 0
    everything = np.sort(np.concatenate([split.train_indices, split.validation_indices]))
    np.testing.assert_array_equal(everything, np.arange(len(dataset)))


def test_split_keeps_each_labels_share(dataset: Dataset) -> None:
    split = carve_validation(dataset.labels)
    overall = np.bincount(dataset.labels)
    held_out = np.bincount(dataset.labels[split.validation_indices], minlength=len(overall))
    assert np.all(np.abs(held_out - overall * 0.1) <= 1)


def test_quick_training_rows_come_only_from_the_training_portion(dataset: Dataset) -> None:
    split = carve_validation(dataset.labels)
    for recipe in RECIPES.values():
        if recipe.dataset != dataset.name:
            continue
        rows = subset(dataset.labels, split.train_indices, recipe.quick.train_examples, DEFAULT_SEED)
        assert len(rows) == recipe.quick.train_examples
        assert np.isin(rows, split.train_indices).all()
        assert not np.isin(rows, split.validation_indices).any()


def test_data_checksum_changes_when_a_validation_row_changes() -> None:
    labels = np.repeat(np.arange(10, dtype=np.uint8), 20)
    images = np.arange(200 * 28 * 28, dtype=np.uint32).astype(np.uint8).reshape(200, 28, 28)
    split = carve_validation(labels)
    before = split.describe(Dataset("mnist", "train", images, labels))
    images[split.validation_indices[0], 0, 0] ^= 1
    after = split.describe(Dataset("mnist", "train", images, labels))
    assert before["indices_sha256"] == after["indices_sha256"]
    assert before["data_sha256"] != after["data_sha256"]


@pytest.mark.parametrize(("counts", "size"), [([5923, 6742, 5958], 1862), ([1, 1, 1], 2), ([3, 0, 7], 5)])
def test_class_quotas_sum_to_the_requested_size(counts: list[int], size: int) -> None:
    quotas = class_quotas(np.asarray(counts), size)
    assert quotas.sum() == size
    assert np.all(quotas <= np.asarray(counts))
