"""MNIST from the formats users have: LeCun's IDX files (gzipped or not) or Keras' ``mnist.npz``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from classify_client.formats import FormatError, read_idx
from classify_train.data.checksums import file_sha256, source_name
from classify_train.data.dataset import DataError, Dataset, Split

NUM_CLASSES = 10
IMAGE_SHAPE = (28, 28)
# IDX files are named after the split: train-* for training, t10k-* for the standard test set.
_IDX_PREFIX = {"train": "train", "test": "t10k"}
# Keras' mnist.npz keeps both splits in one file under these keys.
_NPZ_KEYS = {"train": ("x_train", "y_train"), "test": ("x_test", "y_test")}
NPZ_NAME = "mnist.npz"


def load_mnist(data_dir: Path, split: Split = "train") -> Dataset:
    """Load one MNIST split from ``data_dir`` or ``data_dir/mnist``: IDX files first, else ``mnist.npz``."""
    if split not in _IDX_PREFIX:
        raise DataError(f"MNIST has no {split!r} split; choose one of {sorted(_IDX_PREFIX)}")
    images_path, labels_path = _find_idx_pair(data_dir, split)
    if images_path and labels_path:
        images, labels = read_idx(images_path), read_idx(labels_path)
        sources = {source_name(images_path): file_sha256(images_path)}
        sources[source_name(labels_path)] = file_sha256(labels_path)
        checked_path = images_path
    elif npz_path := _find_first(data_dir, [NPZ_NAME]):
        images, labels = _read_npz(npz_path, split)
        sources = {source_name(npz_path): file_sha256(npz_path)}
        checked_path = npz_path
    else:
        raise DataError(_missing_message(data_dir, split))
    _check_shapes(checked_path, images, labels)
    return Dataset(
        "mnist", split, images.astype(np.uint8, copy=False), labels.astype(np.uint8, copy=False), sources
    )


def has_mnist_split(data_dir: Path, split: str) -> bool:
    """Whether :func:`load_mnist` would find the split's files (without reading them)."""
    return all(_find_idx_pair(data_dir, split)) or _find_first(data_dir, [NPZ_NAME]) is not None


def idx_candidates(split: str) -> tuple[list[str], list[str]]:
    """File names tried for a split's images and labels, in order (with and without .gz, and the dotted
    ``train-images.idx3-ubyte`` spelling some mirrors use)."""
    prefix = _IDX_PREFIX[split]
    images = [f"{prefix}-images-idx3-ubyte", f"{prefix}-images.idx3-ubyte"]
    labels = [f"{prefix}-labels-idx1-ubyte", f"{prefix}-labels.idx1-ubyte"]
    return (
        [name + ext for name in images for ext in (".gz", "")],
        [name + ext for name in labels for ext in (".gz", "")],
    )


def _search_dirs(data_dir: Path) -> list[Path]:
    return [data_dir, data_dir / "mnist"]


def _find_first(data_dir: Path, names: list[str]) -> Path | None:
    for directory in _search_dirs(data_dir):
        for name in names:
            if (directory / name).is_file():
                return directory / name
    return None


def _find_idx_pair(data_dir: Path, split: str) -> tuple[Path | None, Path | None]:
    # Images and labels must come from the same directory: mixing two copies would mislabel silently.
    image_names, label_names = idx_candidates(split)
    for directory in _search_dirs(data_dir):
        images = next((directory / n for n in image_names if (directory / n).is_file()), None)
        labels = next((directory / n for n in label_names if (directory / n).is_file()), None)
        if images and labels:
            return images, labels
    return None, None


def _read_npz(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    x_key, y_key = _NPZ_KEYS[split]
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [key for key in (x_key, y_key) if key not in archive.files]
            if missing:
                raise FormatError(
                    path, f"missing keys {missing}; a Keras mnist.npz has {list(_NPZ_KEYS.values())}"
                )
            return archive[x_key], archive[y_key]
    except (OSError, ValueError) as exc:
        if isinstance(exc, FormatError):
            raise
        raise FormatError(path, f"not a readable .npz archive: {exc}") from exc


def _check_shapes(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    if images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
        raise FormatError(path, f"expected images of shape (N, 28, 28), got {images.shape}")
    if labels.shape != (images.shape[0],):
        raise FormatError(path, f"expected {images.shape[0]} labels, got an array of shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise FormatError(path, f"labels must be digits 0-9, found {labels.min()}..{labels.max()}")


def _missing_message(data_dir: Path, split: str) -> str:
    image_names, label_names = idx_candidates(split)
    dirs = " or ".join(str(d) for d in _search_dirs(data_dir))
    return (
        f"no MNIST {split} split in {dirs}: looked for {image_names[0]} + {label_names[0]} "
        f"(also without .gz) or {NPZ_NAME}"
    )
