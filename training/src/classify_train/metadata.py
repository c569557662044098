"""model.json: what a server and a user need to know about one exported version."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from classify_train.explain_methods import describe_explain
from classify_train.recipes import Recipe

SCHEMA_VERSION = 1
SIGNATURE = "serving_default"
OUTPUT_NAME = "probabilities"
MODEL_JSON = "model.json"


def build_model_json(
    recipe: Recipe,
    version: int,
    *,
    architecture: str,
    parameters: int,
    metrics: dict[str, float],
    quick: bool,
    training: dict[str, Any],
    data: dict[str, Any],
) -> dict[str, Any]:
    document = {
        "schema_version": SCHEMA_VERSION,
        "name": recipe.name,
        "version": version,
        "task": recipe.task,
        "labels": recipe.labels,
        "signature": SIGNATURE,
        "input": recipe.input_spec,
        "output": {"name": OUTPUT_NAME, "dtype": "float32", "shape": [-1, len(recipe.labels)]},
        "explain": describe_explain(recipe),
        "preprocessing": f"Inside the graph: {recipe.preprocessing}.",
        "architecture": architecture,
        "parameters": parameters,
        "metrics": metrics,
        "quick": quick,
        "training": training,
        "data": data,
    }
    if recipe.max_batch_size is not None:
        document["max_batch_size"] = recipe.max_batch_size
    return document


def write_model_json(directory: Path, document: dict[str, Any]) -> Path:
    path = directory / MODEL_JSON
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def read_model_json(directory: Path) -> dict[str, Any]:
    return json.loads((directory / MODEL_JSON).read_text(encoding="utf-8"))
