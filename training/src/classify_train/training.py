"""Runs one recipe: picks the training rows, builds and fits the model, measures it on the validation rows.

A run with a ``run_dir`` is resumable: after every epoch the model, optimizer state and epoch number are
saved there (Keras ``BackupAndRestore``), along with the per-epoch history and TensorBoard logs; running the
same command again after an interruption continues from the last finished epoch.
"""

from __future__ import annotations

import importlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
import tensorflow as tf

from classify_train.buckets import LengthBuckets
from classify_train.data.dataset import Dataset
from classify_train.data.split import ValidationSplit, rows, subset
from classify_train.distribute import ONE, Distribution
from classify_train.models.summary import describe_architecture
from classify_train.progress import ProgressReporter
from classify_train.recipes import Recipe, Schedule
from classify_train.training_logs import HistoryLog, ScalarLogs

if TYPE_CHECKING:
    from classify_train.models.imdb import ReviewEncoder
    from classify_train.text import TextPreparation

_EVALUATION_BATCH = 512
HISTORY_FILE = "history.json"
TENSORBOARD_DIR = "tensorboard"
_BACKUP_DIR = "backup"
# Self-training's teacher keeps its checkpoints, history and TensorBoard logs in this subfolder.
TEACHER_DIR = "teacher"


@dataclass
class TrainedModel:
    """A fitted model with what model.json reports about it. ``encoder`` is set for text models: the
    model itself takes token ids, and the exported graph puts the encoder (texts to ids) in front of it."""

    model: keras.Model
    encoder: ReviewEncoder | None
    metrics: dict[str, float]
    training: dict[str, Any]
    architecture: str
    parameters: int
    history: list[dict[str, float]] = field(default_factory=list)


def train(
    recipe: Recipe,
    dataset: Dataset,
    split: ValidationSplit,
    *,
    quick: bool,
    epochs: int | None,
    seed: int,
    run_dir: Path | None = None,
    unlabelled: Callable[[], list[str]] | None = None,
    echo: Callable[[str], None] = print,
    distribution: Distribution = ONE,
) -> TrainedModel:
    """Fit ``recipe`` on the training rows of ``split``; ``unlabelled`` supplies extra texts for the
    vocabulary and embedding pre-training when the recipe asks for them (never labels, never validation).
    The model is built and fitted in ``distribution``'s strategy, with its batch and learning rate."""
    schedule = distribution.scale(recipe.schedule(quick))
    epochs = epochs or schedule.epochs
    keras.utils.set_random_seed(seed)
    train_indices = subset(dataset.labels, split.train_indices, schedule.train_examples, seed)
    # The split is disjoint by construction; this guard keeps it so if the code around it changes.
    if np.intersect1d(train_indices, split.validation_indices).size:
        raise AssertionError("training rows overlap the validation split")
    x_train, y_train = rows(dataset, train_indices)
    x_val, y_val = rows(dataset, split.validation_indices)

    started_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    clock, cpu_clock = time.perf_counter(), time.process_time()
    encoder = None
    self_training: dict[str, Any] = {}
    with distribution.scope():  # the model's (and optimizer's) variables: one copy per replica
        model = build_model(recipe, schedule)
        if recipe.dataset == "imdb":
            from classify_train.text import prepare_text_model

            text = prepare_text_model(
                model, schedule, x_train, x_val, unlabelled, seed=seed, run_dir=run_dir, echo=echo
            )
            encoder, x_train, x_val = text.encoder, text.ids_train, text.ids_val
            if schedule.pseudo_label_confidence and text.ids_unlabelled is not None:
                model, x_train, y_train, self_training = _teach(
                    recipe, schedule, model, text, (y_train, y_val),
                    epochs=epochs, seed=seed, run_dir=run_dir, echo=echo,
                )  # fmt: skip
        history_log = fit(
            model, schedule, (x_train, y_train), (x_val, y_val), epochs=epochs, seed=seed,
            run_dir=run_dir, label=distribution.label() + recipe.name, text=encoder is not None, echo=echo,
        )  # fmt: skip
    if distribution.distributed:
        model = local_copy(recipe, schedule, model)
    history = history_log.epochs
    seconds = time.perf_counter() - clock + history_log.earlier_seconds
    final = history[-1] if history else {}

    training = {
        "epochs": epochs,
        "batch_size": schedule.batch_size,
        "optimizer": schedule.optimizer,
        "learning_rate": schedule.learning_rate,
        **schedule.describe(),
        "seed": seed,
        "train_examples": len(train_indices),
        "validation_examples": len(split.validation_indices),
        "seconds": round(seconds, 2),
        # CPU seconds of this process (all threads): on a shared machine, wall time alone misleads.
        "cpu_seconds": round(time.process_time() - cpu_clock, 1),
        "started_at": started_at,
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
    }
    if history_log.resumed_at_epoch:
        training["resumed_at_epoch"] = history_log.resumed_at_epoch
    if self_training:
        training["self_training"] = self_training
    return TrainedModel(
        model=model,
        encoder=encoder,
        metrics={
            "validation_accuracy": round(float(final.get("val_accuracy", math.nan)), 6),
            "validation_loss": round(float(final.get("val_loss", math.nan)), 6),
        },
        training=training,
        architecture=describe_architecture(model, encoder),
        parameters=int(model.count_params()),
        history=history,
    )


def fit(
    model: keras.Model,
    schedule: Schedule,
    train_rows: tuple[np.ndarray, np.ndarray],
    validation_rows: tuple[np.ndarray, np.ndarray],
    *,
    epochs: int,
    seed: int,
    run_dir: Path | None,
    label: str,
    text: bool,
    echo: Callable[[str], None],
) -> HistoryLog:
    """Compile and fit ``model``, resumable from ``run_dir``; returns the per-epoch history."""
    (x_train, y_train), (x_val, y_val) = train_rows, validation_rows
    inputs = training_inputs(x_train, y_train, schedule, seed, text=text)
    validation: tuple[np.ndarray, np.ndarray] | tf.data.Dataset = (x_val, y_val)
    if text:
        validation = LengthBuckets(x_val, y_val, _EVALUATION_BATCH, shuffle=False, seed=seed).dataset()
    if isinstance(inputs, tf.data.Dataset):
        steps_per_epoch = int(inputs.cardinality())
    else:
        steps_per_epoch = math.ceil(len(y_train) / schedule.batch_size)
    model.compile(
        optimizer=make_optimizer(schedule, steps_per_epoch, epochs),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )

    history_log = HistoryLog(run_dir / HISTORY_FILE if run_dir else None)
    callbacks: list[keras.callbacks.Callback] = []
    if run_dir is not None:
        callbacks.append(
            keras.callbacks.BackupAndRestore(str(run_dir / _BACKUP_DIR), delete_checkpoint=False)
        )
        callbacks.append(ScalarLogs(run_dir / TENSORBOARD_DIR))
    callbacks += [history_log, ProgressReporter(label, epochs, steps_per_epoch, echo=echo)]
    batched = isinstance(inputs, tf.data.Dataset)
    model.fit(
        inputs,
        None if batched else y_train,
        batch_size=None if batched else schedule.batch_size,
        epochs=epochs,
        validation_data=validation,
        # Evaluation needs no small batches; large ones cut the end-of-epoch pass several-fold on CPU.
        validation_batch_size=None if isinstance(validation, tf.data.Dataset) else _EVALUATION_BATCH,
        callbacks=callbacks,
        # Batched inputs shuffle themselves (seeded); arrays are shuffled by Keras each epoch.
        shuffle=not batched,
        verbose=0,
    )
    return history_log


def _teach(
    recipe: Recipe,
    schedule: Schedule,
    teacher: keras.Model,
    text: TextPreparation,
    labels: tuple[np.ndarray, np.ndarray],
    *,
    epochs: int,
    seed: int,
    run_dir: Path | None,
    echo: Callable[[str], None],
) -> tuple[keras.Model, np.ndarray, np.ndarray, dict[str, Any]]:
    """Self-training's first half: fit the teacher (its own resumable folder), pseudo-label the
    unlabelled reviews, and return a fresh student with the rows it is to be trained on."""
    from classify_train.self_training import combine, pseudo_label
    from classify_train.text import start_embeddings

    assert text.ids_unlabelled is not None
    y_train, y_val = labels
    teacher_log = fit(
        teacher, schedule, (text.ids_train, y_train), (text.ids_val, y_val),
        epochs=epochs, seed=seed, run_dir=run_dir / TEACHER_DIR if run_dir else None,
        label=f"{recipe.name} teacher", text=True, echo=echo,
    )  # fmt: skip
    extra = pseudo_label(teacher, text.ids_unlabelled, schedule.pseudo_label_confidence)
    echo(
        f"{recipe.name}: the teacher labelled {len(extra.labels)} of {extra.considered} unlabelled reviews "
        f"with at least {schedule.pseudo_label_confidence:g} confidence; training the student on them too"
    )
    student = build_model(recipe, schedule)
    start_embeddings(student, text.vectors)
    x_train, y_train = combine(text.ids_train, y_train, extra)
    final = teacher_log.epochs[-1] if teacher_log.epochs else {}
    accuracy = round(float(final.get("val_accuracy", math.nan)), 6)
    described = {**extra.describe(), "teacher_validation_accuracy": accuracy}
    return student, x_train, y_train, described


def local_copy(recipe: Recipe, schedule: Schedule, model: keras.Model) -> keras.Model:
    """The trained weights in a model built outside the strategy. Exporting and verifying it then runs no
    collective op, so the chief can do it alone (a distributed predict would wait for the other workers)."""
    local = build_model(recipe, schedule)
    local.set_weights(model.get_weights())
    return local


def build_model(recipe: Recipe, schedule: Schedule) -> keras.Model:
    module_name, function_name = recipe.builder.split(":")
    module = importlib.import_module(f"classify_train.models.{module_name}")
    return getattr(module, function_name)(**schedule.model_options)


def make_optimizer(schedule: Schedule, steps_per_epoch: int, epochs: int) -> keras.optimizers.Optimizer:
    learning_rate: float | keras.optimizers.schedules.LearningRateSchedule = schedule.learning_rate
    if schedule.learning_rate_schedule == "cosine":
        total = max(1, steps_per_epoch * epochs)
        warmup = min(steps_per_epoch, total // 2)
        learning_rate = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=schedule.learning_rate / 10,
            decay_steps=max(1, total - warmup),
            warmup_target=schedule.learning_rate,
            warmup_steps=warmup,
        )
    elif schedule.learning_rate_schedule != "constant":
        raise ValueError(f"unknown learning rate schedule {schedule.learning_rate_schedule!r}")
    config = {"learning_rate": learning_rate, **schedule.optimizer_options}
    return keras.optimizers.get({"class_name": schedule.optimizer, "config": config})


def training_inputs(
    x_train: np.ndarray, y_train: np.ndarray, schedule: Schedule, seed: int, *, text: bool = False
) -> np.ndarray | tf.data.Dataset:
    """Token ids in batches of similar lengths (text), a shuffled tf.data pipeline that distorts each
    batch (images, when the recipe augments), or plain arrays."""
    if text:
        return LengthBuckets(x_train, y_train, schedule.batch_size, shuffle=True, seed=seed).dataset()
    if not schedule.augmentation:
        return x_train
    augment = image_augmenter(schedule.augmentation, seed)
    dataset = tf.data.Dataset.from_tensor_slices((x_train, y_train))
    dataset = dataset.shuffle(len(y_train), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(schedule.batch_size).map(
        lambda images, labels: (augment(images), labels), num_parallel_calls=1
    )
    return dataset.prefetch(2)


def image_augmenter(options: dict[str, float], seed: int) -> Callable[[tf.Tensor], tf.Tensor]:
    """uint8 (N, 28, 28) in, uint8 out: each image rotated by up to ``rotation`` degrees, scaled by up to
    ``zoom`` (a fraction) about its centre and shifted by up to ``shift`` pixels, as one affine warp."""
    rotation = math.radians(options.get("rotation", 0.0))
    zoom, shift = options.get("zoom", 0.0), options.get("shift", 0.0)
    centre = 13.5

    def augment(images: tf.Tensor) -> tf.Tensor:
        count = tf.shape(images)[0]

        def uniform(limit: float, offset: int) -> tf.Tensor:
            return tf.random.uniform([count], -limit, limit, seed=seed + offset)

        angle, scale = uniform(rotation, 0), 1.0 + uniform(zoom, 1)
        shift_x, shift_y = uniform(shift, 2), uniform(shift, 3)
        # The transform maps each output pixel to where it is read from in the input: the inverse of
        # "scale and rotate about the centre, then shift".
        cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
        source_x, source_y = centre + shift_x, centre + shift_y
        zeros = tf.zeros_like(cos)
        transforms = tf.stack(
            [
                cos, sin, centre - cos * source_x - sin * source_y,
                -sin, cos, centre + sin * source_x - cos * source_y,
                zeros, zeros,
            ],
            axis=1,
        )  # fmt: skip
        warped = tf.raw_ops.ImageProjectiveTransformV3(
            images=tf.cast(images, tf.float32)[..., tf.newaxis],
            transforms=transforms,
            output_shape=tf.shape(images)[1:3],
            fill_value=0.0,
            interpolation="BILINEAR",
            fill_mode="CONSTANT",
        )[..., 0]
        return tf.cast(tf.clip_by_value(tf.round(warped), 0, 255), tf.uint8)

    return augment
