"""Loading a data set by name: the one place that maps ``mnist``/``imdb`` to their loaders."""

from __future__ import annotations

from pathlib import Path

from classify_train.data.dataset import Dataset, Split
from classify_train.data.imdb import load_imdb
from classify_train.data.mnist import load_mnist

DATASET_NAMES = ("mnist", "imdb")


def load_dataset(name: str, data_dir: Path, split: Split = "train") -> Dataset:
    if name == "mnist":
        return load_mnist(data_dir, split)
    if name == "imdb":
        return load_imdb(data_dir, split)
    raise KeyError(f"unknown data set {name!r}; choose one of {', '.join(DATASET_NAMES)}")
