"""The client library's retry policy against a real server that is not up yet, then starting.

A call made the moment a server is launched meets UNAVAILABLE twice over: nothing listens at first, then
the models are still loading. With the default policy both clients ride through it within the call's
timeout; with retrying off the first UNAVAILABLE is the answer.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from conftest import copy_model
from servers import Server

from classify_client import AsyncClient, Client, RetryPolicy, UnavailableError
from classify_client.retry import Deadline, RetryBudget

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
