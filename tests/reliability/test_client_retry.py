"""The client library's retry policy against a real server that is not up yet, then starting.

A call made the moment a server is launched meets UNAVAILABLE twice over: nothing listens at first, then
the models are still loading. With the default policy both clients ride through it within the call's
timeout; with retrying off the first UNAVAILABLE is the answer.

A stopping server's gRPC core ends calls it never handed to the application with a bare CANCELLED
(grpc/grpc#41785). That race is rare, so a small real proxy in front of a real server ends chosen calls
exactly that way.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np
import pytest
from conftest import copy_model
from servers import Server

from classify_client import AsyncClient, ClassifyError, Client, RetryPolicy, UnavailableError
from classify_client.retry import UNSTARTED_AT_SHUTDOWN_DETAILS, Deadline, RetryBudget

DIGITS = np.zeros((5, 28, 28), dtype=np.uint8)


def test_both_clients_retry_until_a_starting_server_answers(quick_repository: Path, tmp_path: Path) -> None:
    repository = tmp_path / "models"
    copy_model(quick_repository, "mnist-softmax", repository)
    server = Server(repository, tmp_path)
    patient = RetryPolicy(max_attempts=200, max_backoff=1.0)
    with Client(server.target, timeout=2, retry=None) as impatient, pytest.raises(UnavailableError):
        impatient.classify("mnist-softmax", images=DIGITS)
    started = time.monotonic()
    server.start()
    try:
        with Client(server.target, timeout=180, retry=patient) as client:
            result = client.classify("mnist-softmax", images=DIGITS)
        print(f"sync client answered {time.monotonic() - started:.1f} s after the server was launched")
        assert len(result.predictions) == 5

        server.stop()
        server.start()
        started = time.monotonic()

        async def call() -> int:
            async with AsyncClient(server.target, timeout=180, retry=patient) as client:
                return len((await client.classify("mnist-softmax", images=DIGITS)).predictions)

        assert asyncio.run(call()) == 5
        print(f"async client answered {time.monotonic() - started:.1f} s after the restart")
    finally:
        server.stop()


def test_backoff_doubles_within_half_jitter_and_respects_its_cap() -> None:
    policy = RetryPolicy(initial_backoff=0.1, max_backoff=1.0, multiplier=2.0)
    rng = random.Random(7)
    for retry, bound in enumerate([0.1, 0.2, 0.4, 0.8, 1.0, 1.0]):
        pauses = [policy.pause(retry, rng) for _ in range(200)]
        assert bound / 2 <= min(pauses) and max(pauses) <= bound


def test_the_budget_refuses_retries_once_spent_and_refills_with_calls() -> None:
    budget = RetryBudget(ratio=0.5, per_second=0.0)  # no refill over time: only calls earn retries
    assert sum(budget.try_spend() for _ in range(50)) == 1  # the capacity floor of one token
    budget.on_call()
    assert not budget.try_spend()  # half a token
    budget.on_call()
    assert budget.try_spend()
    assert not budget.try_spend()
    steady = RetryBudget(ratio=0.2, per_second=10.0)
    assert (
        100 <= sum(steady.try_spend() for _ in range(500)) < 110
    )  # ten seconds of allowance, then a trickle


def test_a_deadline_too_close_for_the_next_pause_ends_retrying() -> None:
    assert Deadline(None).allows(1e9)
    assert not Deadline(0.05).allows(1.0)
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    assert grpc.StatusCode.UNAVAILABLE in RetryPolicy().codes


class CancellingProxy(grpc.GenericRpcHandler):
    """Forwards every unary call to ``upstream`` byte for byte, except the Classify calls that
    ``cancel_next`` picks: it ends those itself with CANCELLED and the details given."""

    def __init__(self, upstream: str) -> None:
        self._channel = grpc.insecure_channel(upstream)
        self._lock = threading.Lock()
        self._cancels: list[str] = []
        self.cancelled = 0

    def cancel_next(self, count: int, details: str) -> None:
        with self._lock:
            self._cancels = [details] * count

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        method = handler_call_details.method
        forward = self._channel.unary_unary(method)  # no (de)serializers: bytes pass through

        def handle(request: bytes, context: grpc.ServicerContext) -> bytes:
            if method.endswith("/Classify"):
                with self._lock:
                    details = self._cancels.pop() if self._cancels else None
                    self.cancelled += details is not None
                if details is not None:
                    context.abort(grpc.StatusCode.CANCELLED, details)
            try:
                return forward(request, timeout=context.time_remaining())
            except grpc.RpcError as error:  # the server's own answer, passed on as it was
                context.abort(error.code(), error.details())

        return grpc.unary_unary_rpc_method_handler(handle)


@pytest.fixture
def proxy(quick_repository: Path, tmp_path: Path) -> Iterator[tuple[str, CancellingProxy]]:
    repository = tmp_path / "models"
    copy_model(quick_repository, "mnist-softmax", repository)
    server = Server(repository, tmp_path).start()
    server.wait_serving()
    handler = CancellingProxy(server.target)
    front = grpc.server(futures.ThreadPoolExecutor(max_workers=4), handlers=[handler])
    port = front.add_insecure_port("127.0.0.1:0")
    front.start()
    try:
        yield f"127.0.0.1:{port}", handler
    finally:
        front.stop(None)
        server.stop()


def test_calls_a_stopping_server_never_started_are_sent_again(
    proxy: tuple[str, CancellingProxy],
) -> None:
    target, handler = proxy
    with Client(target, timeout=30) as client:
        handler.cancel_next(3, UNSTARTED_AT_SHUTDOWN_DETAILS)
        assert len(client.classify("mnist-softmax", images=DIGITS).predictions) == 5
        assert handler.cancelled == 3

        # The application's own CANCELLED (other words) is an answer, not a reason to resend.
        handler.cancel_next(1, "cancelled by the operator")
        with pytest.raises(ClassifyError) as raised:
            client.classify("mnist-softmax", images=DIGITS)
        assert raised.value.code == grpc.StatusCode.CANCELLED
        assert handler.cancelled == 4

    strict = RetryPolicy(retry_unstarted_at_shutdown=False)
    with Client(target, timeout=30, retry=strict) as client:
        handler.cancel_next(1, UNSTARTED_AT_SHUTDOWN_DETAILS)
        with pytest.raises(ClassifyError) as raised:
            client.classify("mnist-softmax", images=DIGITS)
        assert raised.value.code == grpc.StatusCode.CANCELLED

    async def call() -> int:
        async with AsyncClient(target, timeout=30) as client:
            return len((await client.classify("mnist-softmax", images=DIGITS)).predictions)

    handler.cancel_next(2, UNSTARTED_AT_SHUTDOWN_DETAILS)
    assert asyncio.run(call()) == 5
    assert handler.cancelled == 7
