"""Trains a raw-TensorFlow model: a ``tf.GradientTape`` step inside ``tf.function``, the cross-entropy of
the softmax, and the update rule of ``optimizers``; no Keras in the model or the loop.

Like the Keras runs, a run with a ``run_dir`` is resumable (``tf.train.Checkpoint`` of the model, the
optimizer state and the epoch, after every epoch) and keeps ``history.json`` and TensorBoard logs there.
"""

from __future__ import annotations

import importlib
import json
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from classify_train.data.dataset import Dataset
from classify_train.data.split import ValidationSplit, rows, subset
from classify_train.models.mnist_tf import RawModel
from classify_train.progress import format_duration
from classify_train.rawtf.optimizers import LearningRate, make_optimizer
from classify_train.rawtf.summaries import RunSummaries
from classify_train.recipes import Recipe, Schedule
from classify_train.training import HISTORY_FILE, TENSORBOARD_DIR, TrainedModel, image_augmenter

_EVALUATION_BATCH = 512
_BACKUP_DIR = "backup"
_LOG_SECONDS = 60.0
_IMAGES = tf.TensorSpec([None, 28, 28], tf.uint8)
_LABELS = tf.TensorSpec([None], tf.int64)


def build_raw_model(recipe: Recipe, schedule: Schedule, seed: int) -> RawModel:
    module_name, class_name = recipe.builder.split(":")
    module = importlib.import_module(f"classify_train.models.{module_name}")
    options = dict(schedule.model_options)
    if class_name != "SoftmaxRegression":  # the softmax starts at zero: nothing random to seed
        options["seed"] = seed
    return getattr(module, class_name)(**options)


def cross_entropy(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Mean of -log softmax(logits)[label]; TensorFlow's fused op, which is the course's
    -sum(y * log(softmax(logits))) computed without the overflow of the naive form."""
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))


class _Steps:
    """The two compiled functions of a run: one gradient step, and scoring one batch."""

    def __init__(self, model: RawModel, optimizer: Any) -> None:
        variables = model.trainable_variables

        @tf.function(input_signature=[_IMAGES, _LABELS])
        def train_step(images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            with tf.GradientTape() as tape:
                logits = model.logits(images, training=True)
                loss = cross_entropy(labels, logits)
            optimizer.apply(tape.gradient(loss, variables), variables)
            return loss, _correct(labels, logits)

        @tf.function(input_signature=[_IMAGES, _LABELS])
        def score(images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            logits = model.logits(images, training=False)
            count = tf.cast(tf.shape(labels)[0], tf.float32)
            return cross_entropy(labels, logits) * count, _correct(labels, logits)

        self.train_step, self.score = train_step, score


def _correct(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    return tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, axis=1), labels), tf.float32))


def _epoch_batches(
    x_train: np.ndarray, y_train: np.ndarray, schedule: Schedule, seed: int, epoch: int
) -> tf.data.Dataset:
    # Each epoch's order comes from (seed, epoch): a resumed run sees the batches the first one would have.
    dataset = tf.data.Dataset.from_tensor_slices((x_train, y_train.astype(np.int64)))
    dataset = dataset.shuffle(len(y_train), seed=seed + epoch).batch(schedule.batch_size)
    if schedule.augmentation:
        augment = image_augmenter(schedule.augmentation, seed + epoch)
        dataset = dataset.map(lambda images, labels: (augment(images), labels), num_parallel_calls=1)
    return dataset.prefetch(2)


def evaluate(steps: _Steps, images: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(mean loss, accuracy) over all rows, in large batches."""
    total_loss = correct = 0.0
    for start in range(0, len(labels), _EVALUATION_BATCH):
        chunk = slice(start, start + _EVALUATION_BATCH)
        loss, right = steps.score(tf.constant(images[chunk]), tf.constant(labels[chunk], tf.int64))
        total_loss, correct = total_loss + float(loss), correct + float(right)
    return total_loss / max(1, len(labels)), correct / max(1, len(labels))


def train(
    recipe: Recipe,
    dataset: Dataset,
    split: ValidationSplit,
    *,
    quick: bool,
    epochs: int | None,
    seed: int,
    run_dir: Path | None = None,
    unlabelled: Callable[[], list[str]] | None = None,  # the Keras train()'s signature; images need none
    echo: Callable[[str], None] = print,
) -> TrainedModel:
    """Fit ``recipe`` on the training rows of ``split`` and measure it on the validation rows."""
    schedule = recipe.schedule(quick)
    epochs = epochs or schedule.epochs
    tf.random.set_seed(seed)  # the CNN's initial weights and its dropout masks
    train_indices = subset(dataset.labels, split.train_indices, schedule.train_examples, seed)
    if np.intersect1d(train_indices, split.validation_indices).size:
        raise AssertionError("training rows overlap the validation split")
    x_train, y_train = rows(dataset, train_indices)
    x_val, y_val = rows(dataset, split.validation_indices)
    started_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    clock, cpu_clock = time.perf_counter(), time.process_time()

    model = build_raw_model(recipe, schedule, seed)
    steps_per_epoch = math.ceil(len(y_train) / schedule.batch_size)
    total = steps_per_epoch * epochs
    rate = LearningRate(schedule.learning_rate, schedule.learning_rate_schedule, total, steps_per_epoch)
    optimizer = make_optimizer(schedule.optimizer, rate, model.trainable_variables)
    run = _Run(run_dir, model, optimizer)
    if run.resumed_at_epoch:
        echo(f"{recipe.name}: resuming from the checkpoint after epoch {run.resumed_at_epoch}/{epochs}")
    steps = _Steps(model, optimizer)
    for epoch in range(run.resumed_at_epoch, epochs):
        epoch_clock = time.perf_counter()
        batches = _epoch_batches(x_train, y_train, schedule, seed, epoch)
        label = f"{recipe.name} epoch {epoch + 1}/{epochs}"
        loss, accuracy = _train_epoch(steps, run, batches, total=steps_per_epoch, label=label, echo=echo)
        val_loss, val_accuracy = evaluate(steps, x_val, y_val)
        entry = {
            "epoch": epoch + 1, "loss": loss, "accuracy": accuracy, "val_loss": val_loss,
            "val_accuracy": val_accuracy, "learning_rate": float(rate(optimizer.step)),
            "seconds": round(time.perf_counter() - epoch_clock, 2),
        }  # fmt: skip
        run.end_epoch(entry)
        left = entry["seconds"] * (epochs - epoch - 1)
        tail = f", about {format_duration(left)} left" if epoch + 1 < epochs else ", done"
        echo(
            f"{recipe.name} epoch {epoch + 1}/{epochs}  loss {loss:.4f}  accuracy {accuracy:.4f}  "
            f"val_loss {val_loss:.4f}  val_accuracy {val_accuracy:.4f}  "
            f"({format_duration(entry['seconds'])}{tail})"
        )
    run.close()
    final = run.history[-1] if run.history else {}
    seconds = time.perf_counter() - clock + run.earlier_seconds
    training: dict[str, Any] = {
        "epochs": epochs, "batch_size": schedule.batch_size, "optimizer": schedule.optimizer,
        "learning_rate": schedule.learning_rate, **schedule.describe(), "seed": seed,
        "train_examples": len(train_indices), "validation_examples": len(split.validation_indices),
        "seconds": round(seconds, 2), "cpu_seconds": round(time.process_time() - cpu_clock, 1),
        "started_at": started_at, "tensorflow_version": tf.__version__,
        "framework": "TensorFlow low-level API (tf.Module, tf.GradientTape in tf.function); no Keras",
    }  # fmt: skip
    if run.resumed_at_epoch:
        training["resumed_at_epoch"] = run.resumed_at_epoch
    return TrainedModel(
        model=model,  # type: ignore[arg-type]  # a tf.Module; export and report dispatch on it
        encoder=None,
        metrics={
            "validation_accuracy": round(float(final.get("val_accuracy", math.nan)), 6),
            "validation_loss": round(float(final.get("val_loss", math.nan)), 6),
        },
        training=training,
        architecture=model.describe(),
        parameters=model.count_params(),
        history=run.history,
    )


def _train_epoch(
    steps: _Steps, run: _Run, batches: tf.data.Dataset, *, total: int, label: str, echo: Callable[[str], None]
) -> tuple[float, float]:
    """One pass over the training rows; returns the epoch's mean batch loss and its accuracy."""
    losses: list[float] = []
    correct, seen = 0.0, 0
    last_log = time.perf_counter()
    for batch, (images, labels) in enumerate(batches):
        if not run.graph_traced:
            loss, right = run.trace_first_step(lambda: steps.train_step(images, labels))  # noqa: B023
        else:
            loss, right = steps.train_step(images, labels)
        losses.append(float(loss))
        correct, seen = correct + float(right), seen + int(labels.shape[0])
        if time.perf_counter() - last_log >= _LOG_SECONDS:
            last_log = time.perf_counter()
            echo(f"{label}: {batch + 1}/{total} batches, loss {np.mean(losses[-50:]):.4f}")
    return float(np.mean(losses)), correct / max(1, seen)


class _Run:
    """A run's state on disk: checkpoint, history.json and TensorBoard logs (all optional)."""

    def __init__(self, run_dir: Path | None, model: RawModel, optimizer: Any) -> None:
        self.run_dir, self.model = run_dir, model
        self.history: list[dict[str, float]] = []
        self.resumed_at_epoch, self.earlier_seconds = 0, 0.0
        self.graph_traced = run_dir is None  # no logs, nothing to trace
        self.summaries = RunSummaries(run_dir / TENSORBOARD_DIR) if run_dir else None
        self._epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self._checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=self._epoch)
        self._manager = None
        if run_dir is not None:
            self._manager = tf.train.CheckpointManager(
                self._checkpoint, str(run_dir / _BACKUP_DIR), max_to_keep=1
            )
            if self._manager.latest_checkpoint:
                self._checkpoint.restore(self._manager.latest_checkpoint).assert_consumed()
                self.resumed_at_epoch = int(self._epoch.numpy())
                self._restore_history()

    def _restore_history(self) -> None:
        assert self.run_dir is not None
        path = self.run_dir / HISTORY_FILE
        if path.is_file():
            saved = json.loads(path.read_text(encoding="utf-8"))
            self.history = [entry for entry in saved if entry["epoch"] <= self.resumed_at_epoch]
            self.earlier_seconds = sum(entry.get("seconds", 0.0) for entry in self.history)

    def trace_first_step(self, step: Callable[[], Any]) -> Any:
        self.graph_traced = True
        assert self.summaries is not None
        return self.summaries.trace_graph(step, "train_step")

    def end_epoch(self, entry: dict[str, float]) -> None:
        epoch = int(entry["epoch"])
        self.history = [e for e in self.history if e["epoch"] < epoch] + [entry]
        if self.run_dir is None or self._manager is None or self.summaries is None:
            return
        self._epoch.assign(epoch)
        self._manager.save(checkpoint_number=epoch)
        (self.run_dir / HISTORY_FILE).write_text(json.dumps(self.history, indent=1) + "\n", encoding="utf-8")
        train = {
            "loss": entry["loss"],
            "accuracy": entry["accuracy"],
            "learning_rate": entry["learning_rate"],
        }
        self.summaries.scalars("train", train, epoch)
        self.summaries.scalars(
            "validation", {"loss": entry["val_loss"], "accuracy": entry["val_accuracy"]}, epoch
        )
        self.summaries.histograms(self.model.trainable_variables, epoch)
        self.summaries.flush()

    def close(self) -> None:
        if self.summaries is not None:
            self.summaries.close()
