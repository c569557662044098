"""``classify-train split``: write the validation rows in the standard formats, so the data a model was
validated on (and never trained on) can be scored with ``classify score``. No TensorFlow."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from classify_client.formats import write_idx, write_jsonl
from classify_train.data.checksums import indices_sha256
from classify_train.data.split import carve_validation, rows, subset
from classify_train.datasets import load_dataset

MNIST_IMAGES = "validation-images-idx3-ubyte.gz"
MNIST_LABELS = "validation-labels-idx1-ubyte.gz"
IMDB_JSONL = "imdb_validation.jsonl.gz"


@dataclass(frozen=True)
class WrittenSplit:
    files: list[Path]
    rows: int
    indices_sha256: str  # of the whole validation split: compare with model.json


def write_validation_split(
    dataset_name: str, data_dir: Path, out_dir: Path, *, limit: int | None, seed: int
) -> WrittenSplit:
    """Write the validation split (or a stratified sample of ``limit`` rows, in row order) to ``out_dir``."""
    dataset = load_dataset(dataset_name, data_dir)
    split = carve_validation(dataset.labels, seed=seed)
    chosen = subset(dataset.labels, split.validation_indices, limit, seed)
    inputs, labels = rows(dataset, chosen)
    out_dir.mkdir(parents=True, exist_ok=True)
    if dataset_name == "mnist":
        files = [out_dir / MNIST_IMAGES, out_dir / MNIST_LABELS]
        write_idx(files[0], inputs)
        write_idx(files[1], labels.astype("uint8"))
    else:
        files = [out_dir / IMDB_JSONL]
        write_jsonl(
            files[0],
            ({"text": text, "label": int(label)} for text, label in zip(inputs, labels, strict=True)),
        )
    return WrittenSplit(files, len(chosen), indices_sha256(split.validation_indices))
