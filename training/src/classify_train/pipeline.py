"""Train one model from a data directory and export it: the body of ``classify-train NAME``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from classify_train.data.dataset import Dataset
from classify_train.data.split import ValidationSplit, carve_validation, rows
from classify_train.datasets import load_dataset
from classify_train.metadata import build_model_json
from classify_train.recipes import get_recipe

# Rows of the validation split the exported graph is checked against (cheap; covers every code path).
_VERIFY_ROWS = 64


@dataclass(frozen=True)
class TrainResult:
    name: str
    version_dir: Path
    validation_accuracy: float
    seconds: float


def train_and_export(
    name: str, data_dir: Path, repo: Path, *, quick: bool, epochs: int | None, seed: int
) -> TrainResult:
    recipe = get_recipe(name)
    dataset = load_dataset(recipe.dataset, data_dir)
    split = carve_validation(dataset.labels, seed=seed)

    # TensorFlow loads here, not at import: the CLI's other commands and --help stay fast.
    from classify_train.export import export_model
    from classify_train.training import train

    trained = train(recipe, dataset, split, quick=quick, epochs=epochs, seed=seed)
    data_section = describe_data(dataset, split)

    def document_for(version: int) -> dict:
        return build_model_json(
            recipe,
            version,
            architecture=trained.architecture,
            parameters=trained.parameters,
            metrics=trained.metrics,
            quick=quick,
            training=trained.training,
            data=data_section,
        )

    sample, _ = rows(dataset, split.validation_indices[:_VERIFY_ROWS])
    version_dir = export_model(trained, repo, name, document_for, sample)
    return TrainResult(name, version_dir, trained.metrics["validation_accuracy"], trained.training["seconds"])


def describe_data(dataset: Dataset, split: ValidationSplit) -> dict:
    return {"source_files": dict(dataset.source_files), "validation_split": split.describe(dataset)}
