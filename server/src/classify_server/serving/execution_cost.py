"""What one execution of a model costs, learnt from the executions it ran: seconds = fixed + rows × per_row.

One number of seconds per row cannot describe a model: a lone row pays the whole fixed cost of a call
(graph dispatch, thread wake-up), a 128-row batch spreads it. Measured on this machine kind (2026-12-06,
quick mnist-cnn, in-process): 0.87 ms for 1 row, 11.3 ms for 128, so the per-row figure of lone rows
overstated a full batch tenfold, and every estimate built on it (expected queue wait, what the model can
run per second) was wrong by as much under mixed load.

The line is an exponentially weighted least-squares fit over recent executions, so it follows the
machine's load (other models and processes slow every execution alike). Until executions of different
sizes have been seen the slope is unknown and every execution is taken to cost what the seen ones did:
exact at the size seen (a flood runs full batches only), and on the side of admitting, not refusing,
for any other size.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

# Weight of the newest execution in the running sums: about the last 50 executions count, a second or
# less under load, long enough to see several batch sizes in a mixed queue.
DECAY = 0.02
# Below this weighted variance of the batch size (rows²) the sizes seen are too alike to fit a slope: a
# queue of lone rows with the odd pair would give a slope of noise.
MIN_SIZE_VARIANCE = 4.0
# Executions before the fit is trusted for a judgement that refuses callers (a flood): the first ones
# after start-up or under a sudden mix of models run slow (new shapes, cold caches, every model at once)
# and made a 4-model soak look like a flood at 3-7x its real cost (2026-12-06).
SETTLED_EXECUTIONS = 20


@dataclass
class ExecutionCost:
    """An online fit of an execution's seconds against its rows; safe to update from worker threads."""

    _weight: float = 0.0
    _rows: float = 0.0  # weighted means of rows, seconds, rows², rows × seconds
    _seconds: float = 0.0
    _rows_sq: float = 0.0
    _rows_seconds: float = 0.0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self.fixed = 0.0
        self.per_row = 0.0
        self.executions = 0

    @property
    def settled(self) -> bool:
        """Have enough executions been measured to trust the fit?"""
        return self.executions >= SETTLED_EXECUTIONS

    def observe(self, rows: int, seconds: float) -> None:
        """One execution of ``rows`` rows took ``seconds``."""
        with self._lock:
            keep = 1.0 - DECAY if self._weight else 0.0
            weight = self._weight * keep + 1.0
            share = 1.0 / weight  # the new execution's part of the weighted means
            self._rows += share * (rows - self._rows)
            self._seconds += share * (seconds - self._seconds)
            self._rows_sq += share * (rows * rows - self._rows_sq)
            self._rows_seconds += share * (rows * seconds - self._rows_seconds)
            self._weight = weight
            self.executions += 1
            self.fixed, self.per_row = self._fit()

    def _fit(self) -> tuple[float, float]:
        variance = self._rows_sq - self._rows**2
        if variance < MIN_SIZE_VARIANCE:
            return self._seconds, 0.0
        slope = (self._rows_seconds - self._rows * self._seconds) / variance
        fixed = self._seconds - slope * self._rows
        # Noise can tilt the line past what is physical: a negative part is folded into the other.
        if slope < 0.0:
            return self._seconds, 0.0
        if fixed < 0.0:
            return 0.0, self._seconds / max(self._rows, 1.0)
        return fixed, slope

    def seconds_for(self, rows: int) -> float:
        """The expected duration of one execution of ``rows`` rows (0 until one has been measured)."""
        return self.fixed + self.per_row * rows if rows > 0 else 0.0

    def queue_seconds(self, rows: int, batch: int) -> float:
        """How long ``rows`` queued rows take to run in executions of at most ``batch`` rows (greedy
        batching runs full batches under load, then one with the rest)."""
        if rows <= 0:
            return 0.0
        full, rest = divmod(rows, batch)
        return full * self.seconds_for(batch) + self.seconds_for(rest)

    def rows_per_second(self, batch: int) -> float:
        """What one execution slot runs at full batches: the model's capacity (0 until measured)."""
        seconds = self.seconds_for(batch)
        return batch / seconds if seconds > 0 else 0.0
