"""``classify-train export-signatures``: give a version exported before the explain signatures existed
its ``explain_*`` signatures, without retraining.

The SavedModel keeps the trained variables (and, for texts, the vocabulary table) but not the Keras
objects, so the recipe's architecture is rebuilt from model.json, the variables are copied in, and the
rebuilt model must reproduce the old version's predictions before anything is written. The result is
published as the next version (the usual atomic rename), so a running server picks it up by itself;
the old version is left as it was.
"""

from __future__ import annotations

import dataclasses
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from classify_train.errors import ExportError
from classify_train.explain_methods import describe_explain, methods_for
from classify_train.export import TOLERANCE, export_model, serving_input_spec
from classify_train.metadata import MODEL_JSON, OUTPUT_NAME, SIGNATURE, read_model_json
from classify_train.models.imdb import ReviewEncoder
from classify_train.models.mnist_tf import RawModel
from classify_train.recipes import Recipe, get_recipe
from classify_train.training import TrainedModel

# Files of a SavedModel: rewritten by the export. Everything else in the version (report, history,
# TensorBoard logs) is copied over unchanged.
_SAVED_MODEL_FILES = {"saved_model.pb", "variables", "assets", "fingerprint.pb", MODEL_JSON}
# Inputs the rebuilt model is compared on: random digits-shaped noise and a few sentences; any input
# the serving signature takes exercises every weight.
_CHECK_ROWS = 16
_CHECK_TEXTS = [
    "a wonderful film, the acting was superb and i loved every minute",
    "dull, predictable and far too long; the worst movie i have seen this year",
    "it was fine",
    "not bad at all, though the ending was weak",
]


def export_signatures(version_dir: Path) -> Path:
    """Write ``version_dir``'s model again with the explain signatures, as the next version."""
    document = read_model_json(version_dir)
    recipe = get_recipe(document["name"])
    restored = tf.saved_model.load(str(version_dir))
    trained = rebuild(recipe, document, restored)
    sample: np.ndarray | list[str] = _check_inputs(recipe)
    _check_same_predictions(trained, restored, sample)

    def document_for(version: int) -> dict[str, Any]:
        return {
            **document,
            "version": version,
            "explain": describe_explain(recipe),
            "reexported": {
                "from_version": int(version_dir.name),
                "at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "why": "explain signatures added without retraining (classify-train export-signatures)",
            },
        }

    def add_files(staging: Path) -> None:
        for entry in version_dir.iterdir():
            if entry.name in _SAVED_MODEL_FILES:
                continue
            copy = shutil.copytree if entry.is_dir() else shutil.copy2
            copy(entry, staging / entry.name)

    return export_model(
        trained,
        version_dir.parent.parent,
        recipe.name,
        document_for,
        sample,
        methods=methods_for(recipe),
        add_files=add_files,
    )


def rebuild(recipe: Recipe, document: dict[str, Any], restored: Any) -> TrainedModel:
    """The recipe's model with the restored variables, and the text encoder with the restored vocabulary."""
    options = document.get("training", {}).get("model_options")
    schedule = recipe.schedule(bool(document.get("quick")))
    schedule = dataclasses.replace(schedule, model_options=options or schedule.model_options)
    trained = TrainedModel(
        model=None,  # type: ignore[arg-type]  # set below
        encoder=None,
        metrics=document.get("metrics", {}),
        training=document.get("training", {}),
        architecture=document.get("architecture", ""),
        parameters=int(document.get("parameters", 0)),
    )
    if recipe.framework == "tensorflow":
        from classify_train.rawtf.loop import build_raw_model

        trained.model = build_raw_model(recipe, schedule, seed=0)
        _copy_module_variables(trained.model, restored)
        return trained
    from classify_train.training import build_model

    trained.model = build_model(recipe, schedule)
    if recipe.dataset == "imdb":
        trained.encoder = _restored_encoder(restored, schedule.model_options)
        trained.model(trained.encoder(tf.constant(_CHECK_TEXTS)))
    else:
        trained.model(np.zeros((1, 28, 28), np.uint8))
    _copy_keras_variables(trained.model, restored)
    return trained


def _copy_keras_variables(model: keras.Model, restored: Any) -> None:
    """ExportArchive saves the tracked model's variables in order: copy them back one for one."""
    sources = list(restored.variables)
    targets = list(model.variables)
    if len(sources) != len(targets):
        raise ExportError(
            f"the saved model has {len(sources)} variables, the rebuilt {model.name} {len(targets)}: "
            "not the architecture model.json describes"
        )
    for target, source in zip(targets, sources, strict=True):
        if tuple(target.shape) != tuple(source.shape):
            raise ExportError(f"variable {source.name} has shape {source.shape}, the rebuilt {target.shape}")
        target.assign(source)


def _copy_module_variables(module: RawModel, restored: Any) -> None:
    """A saved tf.Module restores its variables under their attribute names."""
    for name, variable in vars(module).items():
        if isinstance(variable, tf.Variable):
            source = getattr(restored, name, None)
            if source is None or tuple(source.shape) != tuple(variable.shape):
                raise ExportError(f"the saved model has no variable {name!r} of shape {variable.shape}")
            variable.assign(source)


def _restored_encoder(restored: Any, options: dict[str, Any]) -> ReviewEncoder:
    """A vectorizer with the saved vocabulary, read back from the exported lookup table."""
    from classify_train.models.imdb import standardize

    words, ids = _vocabulary_table(restored)
    order = np.argsort(ids)
    # Ids 0 and 1 are padding and out-of-vocabulary; the table holds the words from id 2 on.
    if not np.array_equal(ids[order], np.arange(2, 2 + len(ids))):
        raise ExportError("the saved vocabulary table is not the vectorizer's (ids are not 2, 3, ...)")
    vocabulary = [words[i].decode("utf-8") for i in order]
    vectorizer = keras.layers.TextVectorization(
        max_tokens=len(vocabulary) + 2, standardize=standardize, output_mode="int", ragged=True
    )
    vectorizer.set_vocabulary(["", "[UNK]", *vocabulary])
    max_words = options["sequence_length"]
    return ReviewEncoder(vectorizer, max_words, options.get("head_words", max_words))


def _vocabulary_table(restored: Any) -> tuple[np.ndarray, np.ndarray]:
    for resource in getattr(restored, "_misc_assets", []):
        handle = getattr(resource, "resource_handle", None)
        if handle is None:
            continue
        try:
            keys, values = tf.raw_ops.LookupTableExportV2(
                table_handle=handle, Tkeys=tf.string, Tvalues=tf.int64
            )
        except (tf.errors.OpError, TypeError, ValueError):
            continue  # another resource (e.g. a hash table of other types)
        return keys.numpy(), values.numpy()
    raise ExportError("no vocabulary table found in the saved text model")


def _check_inputs(recipe: Recipe) -> np.ndarray | list[str]:
    if recipe.dataset == "imdb":
        return list(_CHECK_TEXTS)
    return np.random.default_rng(0).integers(0, 256, (_CHECK_ROWS, 28, 28), dtype=np.uint8)


def _check_same_predictions(trained: TrainedModel, restored: Any, sample: np.ndarray | list[str]) -> None:
    """The rebuilt model must predict exactly what the saved version serves, or nothing is written."""
    from classify_train.export import keras_probabilities

    spec = serving_input_spec(trained)
    served = restored.signatures[SIGNATURE](**{spec.name: tf.constant(sample, dtype=spec.dtype)})
    expected = served[OUTPUT_NAME].numpy()
    rebuilt = keras_probabilities(trained, sample)
    if expected.shape != rebuilt.shape or not np.allclose(expected, rebuilt, rtol=0, atol=TOLERANCE):
        raise ExportError(
            "the rebuilt model does not reproduce the saved version's predictions; retrain it instead"
        )
