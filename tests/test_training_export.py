"""End to end: train quick models, export them, and reload them the way the server will."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from classify_train.data.datadir import DATA_DIR_ENV
from classify_train.data.split import carve_validation, rows
from classify_train.datasets import load_dataset
from classify_train.recipes import RECIPES, Schedule

REPO_ROOT = Path(__file__).resolve().parents[1]
MODEL_JSON_KEYS = {
    "schema_version", "name", "version", "task", "labels", "signature", "input", "output", "explain",
    "preprocessing",
    "architecture", "parameters", "metrics", "quick", "training", "data", "max_batch_size",
}  # fmt: skip
TRAINING_KEYS = {
    "epochs", "batch_size", "optimizer", "seed", "train_examples", "validation_examples", "seconds",
    "started_at", "tensorflow_version", "keras_version",
}  # fmt: skip

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data_dir() -> Path:
    return Path(os.environ.get(DATA_DIR_ENV) or REPO_ROOT.parent / "shared" / "data")


@pytest.fixture(scope="module")
def softmax_export(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> tuple[Path, str]:
    """`classify-train mnist-softmax --quick` run as users run it, in its own process."""
    repo = tmp_path_factory.mktemp("repo")
    command = [sys.executable, "-c", "from classify_train.cli import main; main()", "mnist-softmax"]
    command += ["--quick", "--data-dir", str(data_dir), "--export", str(repo)]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return repo, completed.stdout


def test_quick_softmax_export_has_the_serving_contract(
    softmax_export: tuple[Path, str], data_dir: Path
) -> None:
    import tensorflow as tf

    repo, stdout = softmax_export
    version_dir = repo / "mnist-softmax" / "1"
    assert f"exported {version_dir}" in stdout and "validation accuracy" in stdout
    assert sorted(p.name for p in (repo / "mnist-softmax").iterdir()) == ["1"]  # no staging left behind
    assert (version_dir / "saved_model.pb").is_file() and (version_dir / "variables").is_dir()
    assert version_dir.stat().st_mode & 0o777 == 0o755  # readable by a server running as another user

    signature = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    inputs = signature.structured_input_signature[1]
    assert list(inputs) == ["images"]
    assert inputs["images"].dtype == tf.uint8 and inputs["images"].shape.as_list() == [None, 28, 28]
    outputs = signature.structured_outputs
    assert list(outputs) == ["probabilities"]
    assert outputs["probabilities"].dtype == tf.float32 and outputs["probabilities"].shape.as_list() == [
        None,
        10,
    ]

    dataset = load_dataset("mnist", data_dir)
    split = carve_validation(dataset.labels)
    images, labels = rows(dataset, split.validation_indices)
    probabilities = signature(images=tf.constant(images))["probabilities"].numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    accuracy = float(np.mean(probabilities.argmax(axis=1) == labels))

    document = json.loads((version_dir / "model.json").read_text(encoding="utf-8"))
    assert set(document) == MODEL_JSON_KEYS
    assert document["name"] == "mnist-softmax" and document["version"] == 1 and document["quick"] is True
    assert document["task"] == "image-classification" and document["labels"] == [str(d) for d in range(10)]
    assert document["signature"] == "serving_default"
    assert document["input"] == {**document["input"], "kind": "image", "name": "images", "dtype": "uint8"}
    assert document["input"]["shape"] == [-1, 28, 28]
    assert document["output"] == {"name": "probabilities", "dtype": "float32", "shape": [-1, 10]}
    assert set(document["training"]) >= TRAINING_KEYS
    assert document["training"]["train_examples"] == RECIPES["mnist-softmax"].quick.train_examples
    assert document["training"]["validation_examples"] == 6000
    assert document["parameters"] == 7850  # 784 x 10 weights + 10 biases
    assert document["max_batch_size"] == RECIPES["mnist-softmax"].max_batch_size
    assert document["metrics"]["validation_accuracy"] >= 0.85
    assert abs(document["metrics"]["validation_accuracy"] - accuracy) < 0.002
    assert document["data"]["validation_split"] == split.describe(dataset)
    assert document["data"]["source_files"] == dataset.source_files


def test_text_export_takes_raw_strings_and_matches_keras(tmp_path: Path, data_dir: Path) -> None:
    """The text path of the contract, on a tiny LSTM so it runs in seconds."""
    import tensorflow as tf

    from classify_train.export import export_model, keras_probabilities
    from classify_train.metadata import build_model_json
    from classify_train.training import train

    tiny = Schedule(
        epochs=1,
        batch_size=64,
        optimizer="adam",
        learning_rate=0.003,
        train_examples=256,
        model_options={
            "vocabulary_size": 500, "sequence_length": 20, "embedding_dim": 8, "lstm_units": 4,
            "head_words": 5,
        },
    )  # fmt: skip
    recipe = dataclasses.replace(RECIPES["imdb-lstm"], quick=tiny)
    dataset = load_dataset("imdb", data_dir)
    split = carve_validation(dataset.labels)
    trained = train(recipe, dataset, split, quick=True, epochs=None, seed=1)
    texts, _ = rows(dataset, split.validation_indices[:16])
    texts = [*texts, "", "<br /><br />Great!!!"]  # empty and punctuation-only reviews must not break it

    def document_for(version: int) -> dict:
        fields = {"architecture": trained.architecture, "parameters": trained.parameters}
        fields |= {"metrics": trained.metrics, "training": trained.training, "data": {}}
        return build_model_json(recipe, version, quick=True, **fields)

    version_dir = export_model(trained, tmp_path, "imdb-lstm", document_for, texts)
    assert version_dir == tmp_path / "imdb-lstm" / "1"
    signature = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    inputs = signature.structured_input_signature[1]
    assert list(inputs) == ["texts"]
    assert inputs["texts"].dtype == tf.string and inputs["texts"].shape.as_list() == [None]
    probabilities = signature(texts=tf.constant(texts))["probabilities"].numpy()
    assert probabilities.shape == (len(texts), 2) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities, keras_probabilities(trained, texts), atol=1e-5)

    document = json.loads((version_dir / "model.json").read_text(encoding="utf-8"))
    assert document["labels"] == ["negative", "positive"] and document["task"] == "text-classification"
    assert document["input"]["name"] == "texts" and document["input"]["shape"] == [-1]
    assert document["output"]["shape"] == [-1, 2]
    assert document["architecture"] == (
        "TextVectorization(500 tokens, first 5 + last 15 words) -> Embedding(500, 8, mask_zero) -> LSTM(4) "
        "-> Dense(2, softmax)"
    )
