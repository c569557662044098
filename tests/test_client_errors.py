"""Errors of the client library: status → exception type, and real RPC failures against a closed port."""

from __future__ import annotations

import asyncio
import socket
import time

import grpc
import numpy as np
import pytest

from classify_client import (
    AsyncClient,
    ClassifyError,
    Client,
    DeadlineExceededError,
    InvalidInputError,
    ModelNotFoundError,
    OverloadedError,
    UnauthenticatedError,
    UnavailableError,
)
from classify_client.errors import describe_for_target, error_for_status, status_from_number


def closed_port_target() -> str:
    """An address nothing listens on: bind a port, then let it go."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, InvalidInputError),
        (grpc.StatusCode.NOT_FOUND, ModelNotFoundError),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, OverloadedError),
        (grpc.StatusCode.DEADLINE_EXCEEDED, DeadlineExceededError),
        (grpc.StatusCode.UNAVAILABLE, UnavailableError),
        (grpc.StatusCode.UNAUTHENTICATED, UnauthenticatedError),
        (grpc.StatusCode.INTERNAL, ClassifyError),
    ],
)
def test_each_status_has_its_exception(code: grpc.StatusCode, kind: type[ClassifyError]) -> None:
    error = error_for_status(code, "what went wrong")
    assert type(error) is kind
    assert isinstance(error, ClassifyError)
    assert (error.code, error.details, str(error)) == (code, "what went wrong", "what went wrong")
    assert status_from_number(code.value[0]) is code


def test_unknown_status_numbers_are_unknown() -> None:
    assert status_from_number(99) is grpc.StatusCode.UNKNOWN


def test_describe_names_the_target() -> None:
    down = error_for_status(grpc.StatusCode.UNAVAILABLE, "failed to connect")
    assert describe_for_target(down, "127.0.0.1:8500") == (
        "cannot reach server at 127.0.0.1:8500 (UNAVAILABLE): failed to connect"
    )
    missing = error_for_status(grpc.StatusCode.NOT_FOUND, "no model 'x'")
    assert "(NOT_FOUND): no model 'x'" in describe_for_target(missing, "h:1")


def test_real_unreachable_server_raises_unavailable() -> None:
    target = closed_port_target()
    with Client(target, timeout=5) as client:
        with pytest.raises(UnavailableError) as info:
            client.classify("mnist-cnn", images=np.zeros((2, 28, 28), np.uint8))
        assert info.value.code == grpc.StatusCode.UNAVAILABLE
        assert info.value.details
        with pytest.raises(UnavailableError):
            client.models()
        with pytest.raises(UnavailableError):
            client.health()
        with pytest.raises(UnavailableError):
            client.classify_future("m", texts=["x"]).result()
        with pytest.raises(UnavailableError):
            list(client.classify_stream([]))


def test_input_errors_are_raised_before_any_call() -> None:
    with Client(closed_port_target()) as client:
        with pytest.raises(ValueError, match="uint8"):
            client.classify("m", images=np.zeros((1, 27, 27), np.uint8))
        with pytest.raises(TypeError, match="exactly one"):
            client.classify("m")


def test_wait_until_ready_gives_up_in_time() -> None:
    target = closed_port_target()
    start = time.monotonic()
    with (
        Client(target) as client,
        pytest.raises(DeadlineExceededError, match=f"server at {target} not SERVING"),
    ):
        client.wait_until_ready(timeout=0.6, poll_interval=0.1)
    assert time.monotonic() - start < 3


def test_async_client_maps_errors_too() -> None:
    async def scenario() -> None:
        async with AsyncClient(closed_port_target(), timeout=5) as client:
            with pytest.raises(UnavailableError):
                await client.classify("m", texts=["a", "b"])
            with pytest.raises(UnavailableError):
                await client.metadata("m")
            with pytest.raises(DeadlineExceededError):
                await client.wait_until_ready("m", timeout=0.3, poll_interval=0.1)

    asyncio.run(scenario())
