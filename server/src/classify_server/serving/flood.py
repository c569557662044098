"""Telling an open-loop flood from a closed loop of many callers, by the rows offered against capacity.

A closed loop (each caller waits for its answer before asking again) never offers more than the model
runs for long: its bursts (every caller starting at once, every caller answered as a batch ends) come
once and pass. An open loop offers what it offers whatever the answers do. Both build a standing queue,
so the queue alone cannot tell them apart (a 256-caller soak of four models waits ~1 s, as long as a
flood held by the row bound), and only the flood may be shed: refusing a closed loop's callers is loss.

So a flood is rows offered (refused ones too) above FLOOD_FACTOR times the capacity at full batches
over a short window, or above SUSTAINED_FACTOR over a long one for most of that window. The windows are
counted in full-batch times (with a floor in seconds), so a slow model's bursts, which are as many rows
but last longer, weigh the same as a fast one's: a burst of K full batches at once reads K/8 on the
short window and K/40 on the long one. Measured 2026-12-06 on two cores, quick models: a 256-caller
soak of four models peaked at 2.1x on a 0.1 s window and 1.1x on 0.5 s; a 10x flood of 128-image
requests read 18-30x, and one whose requests reached the batcher slowly (the machine saturated, the
intake getting the CPU the model left) 1.9-2.9x for seconds. The flood ends when the long-window rate
falls below EXIT_FACTOR (hysteresis: a flood half shed still offers well above capacity).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

FLOOD_FACTOR = 6.0
FAST_WINDOW_BATCHES, FAST_WINDOW_FLOOR = 8.0, 0.1  # a 10x flood crosses FLOOD_FACTOR after ~0.9 window
SUSTAINED_FACTOR = 1.6
SLOW_WINDOW_BATCHES, SLOW_WINDOW_FLOOR = 40.0, 0.5
HOLD_SHARE = 0.8  # of the slow window, the rate held above SUSTAINED_FACTOR
EXIT_FACTOR = 1.2
# Wait allowed during a flood, in full batches at the measured cost: 0.1 admits a request only as the
# running execution ends (2026-11-28, 10x flood of 128-image requests: accepted p99 1.8-2.0x unloaded).
QUEUED_BATCHES = 0.1


@dataclass
class FloodDetector:
    """Rows offered per second, exponentially smoothed over a short and a long window, against capacity."""

    fast_rate: float = 0.0
    slow_rate: float = 0.0
    updated: float = 0.0
    over_since: float | None = None  # when the slow rate last rose above SUSTAINED_FACTOR x capacity
    flooding: bool = False
    fast_ratio: float = 0.0  # offered / capacity at the last arrival
    slow_ratio: float = 0.0

    def offer(self, rows: int, now: float, batch_rows: int, batch_seconds: float) -> bool:
        """An arrival of ``rows`` at ``now`` (seconds); is this a flood? The model runs ``batch_rows`` in
        ``batch_seconds`` (0 while unknown: never a flood then)."""
        fast_window = max(FAST_WINDOW_FLOOR, FAST_WINDOW_BATCHES * batch_seconds)
        slow_window = max(SLOW_WINDOW_FLOOR, SLOW_WINDOW_BATCHES * batch_seconds)
        elapsed = now - self.updated
        self.updated = now
        self.fast_rate = self.fast_rate * math.exp(-elapsed / fast_window) + rows / fast_window
        self.slow_rate = self.slow_rate * math.exp(-elapsed / slow_window) + rows / slow_window
        if batch_seconds <= 0:
            return self.flooding
        capacity = batch_rows / batch_seconds
        self.fast_ratio, self.slow_ratio = self.fast_rate / capacity, self.slow_rate / capacity
        if self.slow_ratio < SUSTAINED_FACTOR:
            self.over_since = None
        elif self.over_since is None:
            self.over_since = now
        if self.flooding:
            self.flooding = self.slow_ratio >= EXIT_FACTOR
        else:
            held = self.over_since is not None and now - self.over_since >= HOLD_SHARE * slow_window
            self.flooding = self.fast_ratio > FLOOD_FACTOR or held
        return self.flooding
