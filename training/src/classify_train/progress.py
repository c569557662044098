"""The training progress display: one line per epoch with its metrics and an estimate of the time left,
and, on a terminal, a live line inside each epoch (batches done, batch loss, time left in the epoch)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import keras

_REFRESH_SECONDS = 0.5
# Not a terminal (a log file): a progress line within an epoch at most this often.
_LOG_SECONDS = 60.0
_SHOWN = ("loss", "accuracy", "val_loss", "val_accuracy")


def format_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class ProgressReporter(keras.callbacks.Callback):
    def __init__(
        self,
        name: str,
        epochs: int,
        steps_per_epoch: int,
        *,
        echo: Callable[[str], None] = print,
        live: bool | None = None,
    ) -> None:
        super().__init__()
        self.name, self.epochs, self.steps = name, epochs, steps_per_epoch
        self.echo = echo
        self.live = sys.stderr.isatty() if live is None else live
        self._epoch_seconds: list[float] = []
        self._epoch_clock = 0.0
        self._last_refresh = 0.0
        self._current_epoch = 0

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        initial = int(getattr(self.model, "_initial_epoch", 0) or 0)
        if initial:
            self.echo(f"{self.name}: resuming from the checkpoint after epoch {initial}/{self.epochs}")

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch_clock = self._last_refresh = time.perf_counter()
        self._current_epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        now = time.perf_counter()
        if now - self._last_refresh < (_REFRESH_SECONDS if self.live else _LOG_SECONDS):
            return
        self._last_refresh = now
        done = batch + 1
        left = (now - self._epoch_clock) / done * (self.steps - done)
        loss = (logs or {}).get("loss")
        loss_text = f", loss {float(loss):.4f}" if loss is not None else ""
        line = (
            f"{self.name} epoch {self._current_epoch + 1}/{self.epochs}: {done}/{self.steps} batches"
            f"{loss_text}, {format_duration(left)} left in the epoch"
        )
        if self.live:
            sys.stderr.write(f"\r{line}   ")
            sys.stderr.flush()
        else:
            self.echo(line)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        seconds = time.perf_counter() - self._epoch_clock
        self._epoch_seconds.append(seconds)
        remaining = self.epochs - (epoch + 1)
        # The last few epochs predict the next ones best (the first one pays for tracing).
        recent = self._epoch_seconds[-3:]
        left = sum(recent) / len(recent) * remaining
        metrics = "  ".join(
            f"{key} {float(logs[key]):.4f}" for key in _SHOWN if logs and logs.get(key) is not None
        )
        if self.live:
            sys.stderr.write("\r" + " " * 100 + "\r")
        tail = f", about {format_duration(left)} left" if remaining else ", done"
        self.echo(
            f"{self.name} epoch {epoch + 1}/{self.epochs}  {metrics}  ({format_duration(seconds)}{tail})"
        )
