"""Retrying idempotent calls: exponential backoff with jitter, bounded by the call's deadline and a budget.

Why not gRPC's own service-config ``retryPolicy``: gRPC caps it at 5 attempts and draws each pause
uniformly from [0, backoff], so the time it keeps trying is short and random, and its ``retryThrottling``
stops retrying after a handful of consecutive failures on the channel. That protects a fleet of replicas
from retry storms but cannot ride out the one thing a batch job most needs to survive: its server
restarting (10-30 s of UNAVAILABLE). This loop keeps trying until the call's own deadline, with a budget
that still lets a trickle of retries through during an outage while keeping retries a small fraction of
the traffic when a server is merely flaky.

Only idempotent calls retry (Classify, ListModels, GetModelMetadata): answering one twice is harmless.
Streams never do (part of a stream may already have been answered), nor LoadModel / UnloadModel.

Besides UNAVAILABLE, one kind of CANCELLED retries: a stopping server's gRPC core ends the calls it had
received but not yet handed to the application with CANCELLED and the bare text "CANCELLED"
(grpc/grpc#41785; the proposed fix, grpc/grpc#41786, makes them UNAVAILABLE). The server never ran
them, so they are as safe to send again as a refused connection. A call this client cancels itself
never gets here: gRPC raises FutureCancelledError or asyncio.CancelledError for those, not RpcError.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import grpc

from .errors import ClassifyError, error_from_rpc

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class RetryPolicy:
    """When and how often a failed idempotent call is sent again.

    ``max_attempts`` counts the first try (1 turns retrying off). The pause before retry ``n`` (0-based)
    is drawn from [b/2, b] with b = min(initial_backoff * multiplier**n, max_backoff): half fixed so the
    total wait is predictable enough to span a restart, half random so clients that failed together do
    not come back together. The call's deadline (``timeout=``) bounds everything: no pause outlasts it.
    The budget allows retries worth ``budget_ratio`` of the calls made, plus ``budget_per_second``
    retries a second whatever the traffic, so one client cannot multiply a struggling server's load.
    """

    max_attempts: int = 20
    initial_backoff: float = 0.1
    max_backoff: float = 5.0
    multiplier: float = 2.0
    codes: frozenset[grpc.StatusCode] = frozenset({grpc.StatusCode.UNAVAILABLE})
    # Also retry the CANCELLED a stopping server's gRPC core gives calls it never started (module doc).
    retry_unstarted_at_shutdown: bool = True
    budget_ratio: float = 0.2
    budget_per_second: float = 10.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if self.initial_backoff < 0 or self.max_backoff < self.initial_backoff or self.multiplier < 1:
            raise ValueError("backoff needs 0 <= initial_backoff <= max_backoff and multiplier >= 1")

    def pause(self, retry: int, rng: random.Random | None = None) -> float:
        bound = min(self.initial_backoff * self.multiplier**retry, self.max_backoff)
        return bound / 2 + (rng or random).uniform(0, bound / 2)


NO_RETRY = RetryPolicy(max_attempts=1)
# The status text gRPC core gives a call it received but never handed to the application when the
# server stops (filter_stack_call.cc, ExternalUnref); the application's own CANCELLED carries its words.
UNSTARTED_AT_SHUTDOWN_DETAILS = "CANCELLED"


@dataclass
class RetryBudget:
    """A token bucket shared by every call of one client: a retry spends a token or does not happen."""

    ratio: float
    per_second: float
    _tokens: float = field(init=False)
    _capacity: float = field(init=False)
    _last: float = field(init=False, default_factory=time.monotonic)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        # Ten seconds' worth of the steady allowance: enough for every chunk in flight to retry at once.
        self._capacity = max(10 * self.per_second, 1.0)
        self._tokens = self._capacity

    @classmethod
    def for_policy(cls, policy: RetryPolicy) -> RetryBudget:
        return cls(policy.budget_ratio, policy.budget_per_second)

    def on_call(self) -> None:
        with self._lock:
            self._tokens = min(self._capacity, self._tokens + self.ratio)

    def try_spend(self) -> bool:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self._capacity, self._tokens + (now - self._last) * self.per_second)
            self._last = now
            if self._tokens < 1:
                return False
            self._tokens -= 1
            return True


class Deadline:
    """One timeout shared by every attempt and every chunk of a call."""

    def __init__(self, timeout: float | None) -> None:
        self._end = None if timeout is None else time.monotonic() + timeout

    def remaining(self) -> float | None:
        if self._end is None:
            return None
        # Never hand gRPC a non-positive timeout: it would fail without saying which deadline passed.
        return max(self._end - time.monotonic(), 0.001)

    def allows(self, pause: float) -> bool:
        """Whether a pause of ``pause`` seconds still leaves time for another attempt."""
        return self._end is None or time.monotonic() + pause < self._end


@dataclass
class Retrier:
    """The retry decision for one client: its policy and the budget all its calls share."""

    policy: RetryPolicy
    budget: RetryBudget

    @classmethod
    def of(cls, policy: RetryPolicy | None) -> Retrier:
        policy = policy or NO_RETRY
        return cls(policy, RetryBudget.for_policy(policy))

    def next_pause(self, error: grpc.RpcError, attempt: int, deadline: Deadline) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or None to give up with ``error``."""
        if not self.retryable(error) or attempt + 1 >= self.policy.max_attempts:
            return None
        pause = self.policy.pause(attempt)
        if not deadline.allows(pause) or not self.budget.try_spend():
            return None
        return pause

    def retryable(self, error: grpc.RpcError) -> bool:
        """Whether the policy sends a call that failed with ``error`` again (pauses and budget aside)."""
        code = error.code() if hasattr(error, "code") else None
        if code in self.policy.codes:
            return True
        return (
            self.policy.retry_unstarted_at_shutdown
            and code == grpc.StatusCode.CANCELLED
            and hasattr(error, "details")
            and error.details() == UNSTARTED_AT_SHUTDOWN_DETAILS
        )

    def give_up(self, error: grpc.RpcError, attempts: int, started: float) -> ClassifyError:
        converted = error_from_rpc(error)
        if attempts > 1:
            converted.details = (
                f"{converted.details} (gave up after {attempts} attempts "
                f"in {time.monotonic() - started:.1f} s)"
            )
            converted.args = (converted.details,)
        return converted

    def call(self, send: Callable[[float | None], T], deadline: Deadline) -> T:
        """Blocking: ``send(timeout)`` until it succeeds, raising ClassifyError when retrying ends."""
        self.budget.on_call()
        started = time.monotonic()
        attempt = 0
        while True:
            try:
                return send(deadline.remaining())
            except grpc.RpcError as error:
                pause = self.next_pause(error, attempt, deadline)
                if pause is None:
                    raise self.give_up(error, attempt + 1, started) from None
            time.sleep(pause)
            attempt += 1

    async def call_async(self, send: Callable[[float | None], Awaitable[T]], deadline: Deadline) -> T:
        """The asyncio twin of ``call``."""
        self.budget.on_call()
        started = time.monotonic()
        attempt = 0
        while True:
            try:
                return await send(deadline.remaining())
            except grpc.RpcError as error:
                pause = self.next_pause(error, attempt, deadline)
                if pause is None:
                    raise self.give_up(error, attempt + 1, started) from None
            await asyncio.sleep(pause)
            attempt += 1


class RetryingFuture(Generic[R, T]):
    """A call in flight (a grpc.Future) that ``result()`` resends while the retry policy allows.

    The first attempt starts at once, so several of these overlap like plain futures; only a failed
    one pays its pauses, inside ``result()``.
    """

    def __init__(
        self,
        start: Callable[[float | None], grpc.Future],
        convert: Callable[[R], T],
        retrier: Retrier,
        deadline: Deadline,
    ) -> None:
        self._start = start
        self._convert = convert
        self._retrier = retrier
        self._deadline = deadline
        retrier.budget.on_call()
        self._started = time.monotonic()
        self._future: Any = start(deadline.remaining())

    def result(self, timeout: float | None = None) -> T:
        attempt = 0
        while True:
            try:
                return self._convert(self._future.result(timeout=timeout))
            except grpc.RpcError as error:
                pause = self._retrier.next_pause(error, attempt, self._deadline)
                if pause is None:
                    raise self._retrier.give_up(error, attempt + 1, self._started) from None
            time.sleep(pause)
            attempt += 1
            self._future = self._start(self._deadline.remaining())

    def done(self) -> bool:
        return self._future.done()

    def cancel(self) -> bool:
        return self._future.cancel()
