"""Runs one recipe: picks the training rows, builds and fits the model, measures it on the validation rows."""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from classify_train.data.dataset import Dataset
from classify_train.data.split import ValidationSplit, rows, subset
from classify_train.models.imdb import build_vectorizer
from classify_train.models.summary import describe_architecture
from classify_train.recipes import Recipe, Schedule

_VECTORIZE_BATCH = 2048
_EVALUATION_BATCH = 512


@dataclass
class TrainedModel:
    """A fitted model with what model.json reports about it. ``vectorizer`` is set for text models: the
    model itself takes token ids, and the exported graph puts the vectorizer in front of it."""

    model: keras.Model
    vectorizer: keras.layers.TextVectorization | None
    metrics: dict[str, float]
    training: dict[str, Any]
    architecture: str
    parameters: int


def train(
    recipe: Recipe, dataset: Dataset, split: ValidationSplit, *, quick: bool, epochs: int | None, seed: int
) -> TrainedModel:
    schedule = recipe.schedule(quick)
    epochs = epochs or schedule.epochs
    keras.utils.set_random_seed(seed)
    train_indices = subset(dataset.labels, split.train_indices, schedule.train_examples, seed)
    # The split is disjoint by construction; this guard keeps it so if the code around it changes.
    if np.intersect1d(train_indices, split.validation_indices).size:
        raise AssertionError("training rows overlap the validation split")
    x_train, y_train = rows(dataset, train_indices)
    x_val, y_val = rows(dataset, split.validation_indices)

    started_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    clock = time.perf_counter()
    vectorizer = None
    if recipe.dataset == "imdb":
        options = schedule.model_options
        vectorizer = build_vectorizer(x_train, options["vocabulary_size"], options["sequence_length"])  # type: ignore[arg-type]
        x_train, x_val = vectorize(vectorizer, x_train), vectorize(vectorizer, x_val)  # type: ignore[arg-type]
    model = build_model(recipe, schedule)
    model.compile(
        optimizer=make_optimizer(schedule), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    history = model.fit(
        x_train,
        y_train,
        batch_size=schedule.batch_size,
        epochs=epochs,
        validation_data=(x_val, y_val),
        # Evaluation needs no small batches; large ones cut the end-of-epoch pass several-fold on CPU.
        validation_batch_size=_EVALUATION_BATCH,
        verbose=2,
    )
    seconds = time.perf_counter() - clock

    return TrainedModel(
        model=model,
        vectorizer=vectorizer,
        metrics={
            "validation_accuracy": round(float(history.history["val_accuracy"][-1]), 6),
            "validation_loss": round(float(history.history["val_loss"][-1]), 6),
        },
        training={
            "epochs": epochs,
            "batch_size": schedule.batch_size,
            "optimizer": schedule.optimizer,
            "learning_rate": schedule.learning_rate,
            "seed": seed,
            "train_examples": len(train_indices),
            "validation_examples": len(split.validation_indices),
            "seconds": round(seconds, 2),
            "started_at": started_at,
            "tensorflow_version": tf.__version__,
            "keras_version": keras.__version__,
        },
        architecture=describe_architecture(model, vectorizer),
        parameters=int(model.count_params()),
    )


def build_model(recipe: Recipe, schedule: Schedule) -> keras.Model:
    module_name, function_name = recipe.builder.split(":")
    module = importlib.import_module(f"classify_train.models.{module_name}")
    return getattr(module, function_name)(**schedule.model_options)


def make_optimizer(schedule: Schedule) -> keras.optimizers.Optimizer:
    return keras.optimizers.get(
        {"class_name": schedule.optimizer, "config": {"learning_rate": schedule.learning_rate}}
    )


def vectorize(vectorizer: keras.layers.TextVectorization, texts: list[str]) -> np.ndarray:
    """Token ids for all texts, computed once up front so every epoch trains on plain int arrays."""
    batches = [
        vectorizer(tf.constant(texts[i : i + _VECTORIZE_BATCH]))
        for i in range(0, len(texts), _VECTORIZE_BATCH)
    ]
    return np.concatenate([np.asarray(batch) for batch in batches]) if batches else np.zeros((0, 0), np.int64)
