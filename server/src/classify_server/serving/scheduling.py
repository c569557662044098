"""The batcher's queue policy: priorities, what an execution takes, and when an arrival is refused.

Priorities (``high``, ``normal``, ``low``; normal when unset) order the queue: an execution takes high
rows first, then normal, then low. While a higher priority has arrived in the last
PRIORITY_MEMORY_SECONDS, an execution carries at most ``background_rows`` rows of the lower ones (a
larger request is cut into slices), so an online caller waits behind a short execution, never behind a
batch job's 256-row one, and the job still moves in every execution. Under overload the lowest
priority is shed first: a full queue evicts its newest lowest-priority requests to admit a higher one.

Admission is bounded by expected wait: the rows queued ahead (at the request's priority or above) run in
full batches at the model's measured cost (execution_cost.py), plus what is left of the running
executions. A request is refused at once (RESOURCE_EXHAUSTED) when that wait is over ``max_queue_time``,
over what its deadline leaves, or, during an open-loop flood (flood.py), over a tenth of a full batch.
A closed loop of callers never offers more than the model runs for long, so a 256-caller soak is never
shed, while a flood is shed on arrival and the requests it admits wait for about one execution.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING

import numpy as np

from classify_server.errors import InvalidInputError
from classify_server.request_ids import PRIORITY_HEADER
from classify_server.serving import flood

if TYPE_CHECKING:
    from classify_server.serving.batcher import BatchingPolicy


class Priority(IntEnum):
    LOW = 0
    NORMAL = 1
    HIGH = 2


PRIORITY_NAMES = {p.name.lower(): p for p in Priority}

# How long an arrival of a priority counts as "that traffic is active" for the background cap.
PRIORITY_MEMORY_SECONDS = 1.0


def parse_priority(text: str) -> Priority:
    """A priority from metadata or a header: ``high``, ``normal`` or ``low`` (any case); empty is normal."""
    if not text:
        return Priority.NORMAL
    try:
        return PRIORITY_NAMES[text.strip().lower()]
    except KeyError:
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise InvalidInputError(
            f"{PRIORITY_HEADER} is {shown!r}; expected one of high, normal, low (unset: normal)"
        ) from None


@dataclass(eq=False)
class Queued:
    """One request in a model's queue."""

    rows: np.ndarray
    future: asyncio.Future[np.ndarray]
    deadline: float | None  # on the event loop's clock
    arrival: float  # on the event loop's clock
    priority: Priority = Priority.NORMAL
    # Futures of the slices already cut off the front of this request (background rows); the future
    # above is then its last slice's.
    parts: list[asyncio.Future[np.ndarray]] = field(default_factory=list)
    # id() of the rows array the caller submitted, kept by every slice cut off it (each slice, and the
    # rest, is a new array): what tracing finds the request by when a slice's execution starts.
    origin: int = 0

    def __post_init__(self) -> None:
        if not self.origin:
            self.origin = id(self.rows)


class PriorityQueue:
    """One FIFO per priority, with the rows queued at each."""

    def __init__(self) -> None:
        self._levels: dict[Priority, deque[Queued]] = {p: deque() for p in Priority}
        self._rows: dict[Priority, int] = dict.fromkeys(Priority, 0)
        self.rows = 0  # over every priority
        self._last_arrival: dict[Priority, float] = dict.fromkeys(Priority, -math.inf)

    def __bool__(self) -> bool:
        return any(self._levels.values())

    def push(self, item: Queued, now: float) -> None:
        self._levels[item.priority].append(item)
        self._add(item.priority, len(item.rows))
        self._last_arrival[item.priority] = now

    def rows_at_or_above(self, priority: Priority) -> int:
        """Rows a request of ``priority`` waits for: its own priority's and the higher ones'."""
        return sum(rows for level, rows in self._rows.items() if level >= priority)

    def oldest_arrival(self) -> float | None:
        """When the request that has waited longest arrived, whatever its priority (the queue delay)."""
        return min((level[0].arrival for level in self._levels.values() if level), default=None)

    def top_active(self, now: float) -> Priority:
        """The highest priority that arrived recently; lower ones get only background rows."""
        for level in sorted(Priority, reverse=True):
            if now - self._last_arrival[level] < PRIORITY_MEMORY_SECONDS:
                return level
        return Priority.LOW

    def levels(self) -> Iterator[tuple[Priority, deque[Queued]]]:
        """Highest priority first."""
        for level in sorted(Priority, reverse=True):
            yield level, self._levels[level]

    def taken(self, priority: Priority, rows: int) -> None:
        """Rows left the queue (popped, or sliced off a request that stays at its head)."""
        self._add(priority, -rows)

    def take(
        self, now: float, size: int, cap: int, new_future: Callable[[], asyncio.Future[np.ndarray]]
    ) -> tuple[list[Queued], list[Queued], list[float]]:
        """The next execution: up to ``size`` rows, highest priority first, FIFO within one (a request
        that does not fit waits for the next; a larger single one goes alone). Below the top active
        priority only ``cap`` rows in all (0: no cap), cut off the front of a request that holds more.
        Returns the batch, the requests dropped unrun (caller gone or deadline passed; the batcher
        settles them) and the queue waits of the requests whose first rows leave now."""
        top = self.top_active(now) if cap else Priority.LOW
        batch: list[Queued] = []
        dropped: list[Queued] = []
        waits: list[float] = []
        rows = background = 0
        for level, queue in self.levels():
            capped = level < top
            while queue and rows < size:
                head = queue[0]
                room = min(size - rows, cap - background) if capped else size - rows
                if room <= 0:
                    break
                if head.future.done() or (head.deadline is not None and head.deadline <= now):
                    queue.popleft()
                    self.taken(level, len(head.rows))
                    dropped.append(head)
                    continue
                if capped and len(head.rows) > room:
                    if not head.parts:
                        waits.append(now - head.arrival)
                    part = Queued(
                        head.rows[:room], new_future(), head.deadline, head.arrival, level, origin=head.origin
                    )
                    head.rows = head.rows[room:]
                    head.parts.append(part.future)
                    self.taken(level, room)
                    batch.append(part)
                    rows += room
                    background += room
                    continue
                if batch and len(head.rows) > size - rows:
                    return batch, dropped, waits
                if not head.parts:
                    waits.append(now - head.arrival)
                queue.popleft()
                self.taken(level, len(head.rows))
                batch.append(head)
                rows += len(head.rows)
                background += len(head.rows) if capped else 0
        return batch, dropped, waits

    def evict_below(self, priority: Priority, rows_needed: int) -> list[Queued]:
        """Pop the newest requests of the lowest priorities below ``priority`` until ``rows_needed``
        rows are free; nothing if that many cannot be freed (a refusal then costs no one else)."""
        freeable = sum(rows for level, rows in self._rows.items() if level < priority)
        if freeable < rows_needed:
            return []
        evicted: list[Queued] = []
        for level in sorted(Priority):
            queue = self._levels[level]
            while queue and level < priority and rows_needed > 0:
                item = queue.pop()
                self._add(level, -len(item.rows))
                rows_needed -= len(item.rows)
                evicted.append(item)
        return evicted

    def trim_to(self, rows_allowed: int) -> list[Queued]:
        """Pop the newest requests of the lowest priorities until at most ``rows_allowed`` rows stay:
        when a flood is recognised, what it queued before is shed rather than left to run late."""
        excess = self.rows - max(rows_allowed, 0)
        return self.evict_below(Priority.HIGH + 1, excess) if excess > 0 else []  # type: ignore[arg-type]

    def _add(self, priority: Priority, rows: int) -> None:
        self._rows[priority] += rows
        self.rows += rows


def wait_refusal(
    model: str,
    wait: float,
    *,
    batch_seconds: float,
    max_queued_batches: float,
    max_queue_time: float,
    flooding: bool,
    deadline_left: float | None,
) -> str | None:
    """Why a request expected to wait ``wait`` seconds is refused, or None to admit it.

    ``batch_seconds`` is a full batch at the measured cost; a bound of 0 is no bound. Only the wait
    counts, not the request's own execution.
    """
    retry = "retry with backoff or on another replica"
    if max_queued_batches and wait > max_queued_batches * batch_seconds:
        return (
            f"model {model!r} is overloaded: a request now would wait about {wait * 1000:.0f} ms "
            f"in its queue, over the {max_queued_batches * batch_seconds * 1000:.0f} ms of "
            f"{max_queued_batches:g} full batches allowed (--max-queued-batches); {retry}"
        )
    if flooding and wait > flood.QUEUED_BATCHES * batch_seconds:
        return (
            f"model {model!r} is overloaded: requests arrive faster than it can run them (a flood), so "
            f"only one that starts within {flood.QUEUED_BATCHES:g} batch is accepted and this one would "
            f"wait about {wait * 1000:.0f} ms; {retry}"
        )
    if max_queue_time and wait > max_queue_time:
        return (
            f"model {model!r} is overloaded: a request now would wait about {wait * 1000:.0f} ms "
            f"in its queue, over the {max_queue_time * 1000:.0f} ms allowed (--max-queue-ms); {retry}"
        )
    if deadline_left is not None and wait > deadline_left:
        # Shed now rather than run it late: the deadline has not passed yet, so RESOURCE_EXHAUSTED
        # (another replica may make it), not DEADLINE_EXCEEDED.
        return (
            f"model {model!r} is overloaded: the work queued ahead needs about {wait * 1000:.0f} ms, "
            f"the deadline leaves {max(deadline_left, 0) * 1000:.0f} ms; {retry}"
        )
    return None


def eviction_notice(model: str) -> str:
    return (
        f"model {model!r} is overloaded: this lower-priority request was shed from the queue to admit "
        "higher-priority work; retry with backoff"
    )


def capacity_refusal(model: str, queued: int, policy: BatchingPolicy, rows: int) -> str:
    return (
        f"model {model!r} is overloaded: {queued} rows queued, capacity {policy.queue_capacity_rows}, "
        f"this request adds {rows}; retry with backoff"
    )


def flood_notice(model: str) -> str:
    return (
        f"model {model!r} is overloaded: requests arrive faster than it can run them (a flood), and this "
        "one was shed from the queue; retry with backoff or on another replica"
    )
