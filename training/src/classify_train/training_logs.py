"""The Keras callbacks that keep a run's record: the per-epoch history (``history.json``, across resumed
runs) and TensorBoard scalars."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf


class HistoryLog(keras.callbacks.Callback):
    """Per-epoch metrics and seconds, kept in a JSON file across interrupted and resumed runs (so learning
    curves cover the whole training), and in memory for the report."""

    def __init__(self, path: Path | None) -> None:
        super().__init__()
        self.path = path
        self.epochs: list[dict[str, float]] = []
        self.resumed_at_epoch = 0
        self.earlier_seconds = 0.0
        self._epoch_clock = 0.0

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        initial = int(getattr(self.model, "_initial_epoch", 0) or 0)
        # Resumed whenever the checkpoint says so: a run killed between the checkpoint and the history
        # write of an epoch has no history of it, but still skips it.
        self.resumed_at_epoch = initial
        if self.path is not None and self.path.is_file() and initial:
            saved = json.loads(self.path.read_text(encoding="utf-8"))
            self.epochs = [entry for entry in saved if entry["epoch"] <= initial]
            self.earlier_seconds = sum(entry.get("seconds", 0.0) for entry in self.epochs)

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch_clock = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        entry = {"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items() if _is_number(v)}}
        entry["seconds"] = round(time.perf_counter() - self._epoch_clock, 2)
        self.epochs = [e for e in self.epochs if e["epoch"] < epoch + 1] + [entry]
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(self.epochs, indent=1) + "\n", encoding="utf-8")


class ScalarLogs(keras.callbacks.Callback):
    """TensorBoard event files (``train/`` and ``validation/``: loss, accuracy; learning rate) written with
    TensorFlow's own summary ops, so training does not need the ``tensorboard`` package installed, only
    whoever views the logs: ``tensorboard --logdir REPO/NAME/VERSION/tensorboard``."""

    def __init__(self, log_dir: Path) -> None:
        super().__init__()
        self.log_dir = log_dir
        self._writers: dict[str, Any] = {}

    def _writer(self, name: str) -> Any:
        if name not in self._writers:
            self._writers[name] = tf.summary.create_file_writer(str(self.log_dir / name))
        return self._writers[name]

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        from tensorflow.core.framework import summary_pb2

        metadata = summary_pb2.SummaryMetadata()
        metadata.plugin_data.plugin_name = "scalars"  # how TensorBoard's scalar dashboard finds them
        values = dict(logs or {})
        learning_rate = getattr(self.model.optimizer, "learning_rate", None)
        if learning_rate is not None:
            values["learning_rate"] = float(np.asarray(learning_rate))
        for key, value in values.items():
            if not _is_number(value):
                continue
            writer_name, tag = ("validation", key[4:]) if key.startswith("val_") else ("train", key)
            with self._writer(writer_name).as_default():
                tf.summary.write(
                    tag, tf.constant(float(value), tf.float32), step=epoch + 1, metadata=metadata
                )
        for writer in self._writers.values():
            writer.flush()

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        for writer in self._writers.values():
            writer.close()


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True
