"""``classify-train evaluate``: score an exported version on labelled data in the standard formats.

It runs the exported SavedModel's ``serving_default`` signature, exactly what the server runs (not the
Keras model), on:

- MNIST: an IDX images file (``t10k-images-idx3-ubyte[.gz]``, ``validation-images-idx3-ubyte.gz``; the
  labels file beside it is found by name), a folder holding such a pair, or a Keras ``mnist.npz`` (its
  test arrays);
- IMDb: JSON lines (``imdb_test.jsonl.gz``, ``imdb_validation.jsonl.gz``; fields ``text`` and ``label``),
  an ``aclImdb/test`` folder (``neg/`` and ``pos/``), or an ``aclImdb`` folder (its ``test/``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from classify_client.formats import FormatError, iter_jsonl, read_idx
from classify_train.data.checksums import rows_sha256
from classify_train.data.dataset import DataError
from classify_train.data.imdb import _read_review, _sorted_review_files
from classify_train.metadata import OUTPUT_NAME, SIGNATURE, read_model_json
from classify_train.repository import existing_versions

_BATCH = {"image": 1024, "text": 256}
_EPSILON = 1e-7
_IMAGE_FOLDER_PAIRS = [
    ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
    ("t10k-images.idx3-ubyte", "t10k-labels.idx1-ubyte"),
    ("validation-images-idx3-ubyte", "validation-labels-idx1-ubyte"),
]


@dataclass
class LabelledData:
    inputs: np.ndarray | list[str]
    labels: np.ndarray
    source: str


@dataclass
class Evaluation:
    name: str
    version: int
    version_dir: Path
    source: str
    rows: int
    accuracy: float
    loss: float
    confusion: np.ndarray
    class_names: list[str]
    seconds: float
    is_validation_split: bool
    document: dict[str, Any] = field(repr=False)
    probabilities: np.ndarray = field(repr=False)
    data: LabelledData = field(repr=False)


def resolve_version(repo: Path, name: str, version: int | None) -> Path:
    versions = existing_versions(repo / name)
    if not versions:
        raise DataError(f"no versions of {name!r} in {repo} (looked for {repo / name}/<integer>/)")
    if version is None:
        return repo / name / str(versions[-1])
    if version not in versions:
        raise DataError(f"{name!r} has no version {version} in {repo}; it has {versions}")
    return repo / name / str(version)


def load_labelled(kind: str, path: Path) -> LabelledData:
    if not path.exists():
        raise DataError(f"{path} does not exist")
    if kind == "image":
        return _load_images(path)
    if kind == "text":
        return _load_texts(path)
    raise DataError(f"cannot evaluate a model whose input kind is {kind!r}")


def _load_images(path: Path) -> LabelledData:
    if path.is_dir():
        for images_name, labels_name in _IMAGE_FOLDER_PAIRS:
            for suffix in (".gz", ""):
                for directory in (path, path / "mnist"):
                    images, labels = directory / (images_name + suffix), directory / (labels_name + suffix)
                    if images.is_file() and labels.is_file():
                        return _idx_pair(images, labels)
        if (path / "mnist.npz").is_file():
            return _load_images(path / "mnist.npz")
        raise DataError(
            f"{path}: no t10k-images-idx3-ubyte[.gz] + t10k-labels-idx1-ubyte[.gz] (or validation-*) pair "
            "and no mnist.npz"
        )
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            if "x_test" not in archive.files or "y_test" not in archive.files:
                raise FormatError(path, "expected the arrays x_test and y_test of a Keras mnist.npz")
            return LabelledData(
                archive["x_test"].astype(np.uint8), archive["y_test"].astype(np.int64), str(path)
            )
    labels_path = path.with_name(path.name.replace("images", "labels").replace("idx3", "idx1"))
    if labels_path == path or not labels_path.is_file():
        raise DataError(f"{path}: expected an IDX images file with its labels beside it ({labels_path.name})")
    return _idx_pair(path, labels_path)


def _idx_pair(images_path: Path, labels_path: Path) -> LabelledData:
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.shape != (images.shape[0],):
        raise FormatError(
            images_path, f"expected (N, 28, 28) images and N labels, got {images.shape}, {labels.shape}"
        )
    return LabelledData(
        images.astype(np.uint8), labels.astype(np.int64), f"{images_path} + {labels_path.name}"
    )


def _load_texts(path: Path) -> LabelledData:
    if path.is_dir():
        folder = path / "test" if (path / "test" / "neg").is_dir() else path
        if not ((folder / "neg").is_dir() and (folder / "pos").is_dir()):
            raise DataError(
                f"{path}: expected an aclImdb/test folder with neg/ and pos/ (or aclImdb/ itself)"
            )
        texts: list[str] = []
        labels: list[int] = []
        for label, sub in enumerate(("neg", "pos")):
            files = _sorted_review_files(folder / sub)
            texts.extend(_read_review(file) for file in files)
            labels.extend([label] * len(files))
        return LabelledData(texts, np.asarray(labels, dtype=np.int64), str(folder))
    texts, labels = [], []
    for row in iter_jsonl(path):
        if row.error is not None or row.record is None:
            raise FormatError(path, f"line {row.line}: {row.error}")
        text, label = row.record.get("text"), row.record.get("label")
        if not isinstance(text, str) or isinstance(label, bool) or label not in (0, 1):
            raise FormatError(path, f"line {row.line}: expected a string 'text' and a 'label' of 0 or 1")
        texts.append(text)
        labels.append(int(label))
    return LabelledData(texts, np.asarray(labels, dtype=np.int64), str(path))


def evaluate(repo: Path, name: str, data_path: Path, *, version: int | None = None) -> Evaluation:
    version_dir = resolve_version(repo, name, version)
    document = read_model_json(version_dir)
    data = load_labelled(document["input"]["kind"], data_path)
    if not len(data.labels):
        raise DataError(f"{data_path}: no labelled rows")
    class_names = list(document["labels"])
    if data.labels.max() >= len(class_names) or data.labels.min() < 0:
        raise DataError(f"{data_path}: labels outside 0..{len(class_names) - 1}")

    import tensorflow as tf

    signature = tf.saved_model.load(str(version_dir)).signatures[SIGNATURE]
    input_name = document["input"]["name"]
    dtype = tf.uint8 if document["input"]["kind"] == "image" else tf.string
    batch = _BATCH[document["input"]["kind"]]
    clock = time.perf_counter()
    chunks = [
        signature(**{input_name: tf.constant(data.inputs[i : i + batch], dtype=dtype)})[OUTPUT_NAME].numpy()
        for i in range(0, len(data.labels), batch)
    ]
    seconds = time.perf_counter() - clock
    probabilities = np.concatenate(chunks)
    predicted = probabilities.argmax(axis=1)
    true_probability = probabilities[np.arange(len(data.labels)), data.labels]
    from classify_train.report import confusion_matrix

    validation = document.get("data", {}).get("validation_split", {})
    return Evaluation(
        name=name,
        version=int(version_dir.name),
        version_dir=version_dir,
        source=data.source,
        rows=len(data.labels),
        accuracy=float(np.mean(predicted == data.labels)),
        loss=float(-np.mean(np.log(np.clip(true_probability, _EPSILON, 1.0)))),
        confusion=confusion_matrix(data.labels, predicted, len(class_names)),
        class_names=class_names,
        seconds=seconds,
        is_validation_split=validation.get("data_sha256") == rows_sha256(data.inputs, data.labels),
        document=document,
        probabilities=probabilities,
        data=data,
    )


def format_evaluation(result: Evaluation) -> str:
    per_second = result.rows / result.seconds if result.seconds else math.inf
    lines = [
        f"{result.name} version {result.version} on {result.source}",
        f"rows {result.rows}  accuracy {result.accuracy:.4f}  loss {result.loss:.4f}  "
        f"({result.seconds:.1f} s, {per_second:,.0f} rows/s)",
    ]
    if result.is_validation_split:
        lines.append("these rows are exactly the model's validation split (model.json data_sha256)")
    width = max(5, *(len(name) for name in result.class_names))
    lines.append("confusion matrix (rows: true, columns: predicted)")
    lines.append(" " * (width + 1) + " ".join(f"{name:>{width}}" for name in result.class_names))
    for name, row in zip(result.class_names, result.confusion, strict=True):
        lines.append(f"{name:>{width}} " + " ".join(f"{count:>{width}}" for count in row))
    return "\n".join(lines)


def write_evaluation_report(result: Evaluation, out_dir: Path) -> Path:
    from classify_train.report import write_prediction_figures, write_summary

    title = f"{result.name} v{result.version} on {Path(result.source.split(' + ')[0]).name}"
    figures = write_prediction_figures(
        out_dir,
        result.data.inputs,
        result.data.labels,
        result.probabilities,
        result.class_names,
        title=title,
    )
    return write_summary(
        out_dir,
        result.document,
        result.data.labels,
        result.probabilities,
        result.class_names,
        figures=figures,
        inputs=result.data.inputs,
        heading=f"{result.name} version {result.version} evaluation",
        scored_on=f"`{result.source}`, loss {result.loss:.4f}",
    )
