"""--grpc-front: which server answers the gRPC port, and grpcio wherever the native front cannot serve.

The whole suite runs on either front (CLASSIFY_TEST_GRPC_FRONT, docs/development.md); these tests pin
the choice itself, with real server objects bound to loopback and a real client call through each.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from pydantic import ValidationError

from classify_server import grpc_front
from classify_server.grpc_front import build_grpc_front
from classify_server.settings import ServerSettings

OPTIONS = [("grpc.so_reuseport", 0)]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The suite-wide CLASSIFY_GRPC_FRONT (CLASSIFY_TEST_GRPC_FRONT) must not decide these tests."""
    monkeypatch.delenv("CLASSIFY_GRPC_FRONT", raising=False)


def settings(tmp_path: Path, **values: object) -> ServerSettings:
    return ServerSettings(model_repository=tmp_path, **values)


def choose(chosen: ServerSettings, options: list[tuple[str, object]] = OPTIONS) -> tuple[str, str, str]:
    """Front name, reason and the server's module; built on an event loop, as grpc.aio needs one."""

    async def build() -> tuple[str, str, str]:
        front = build_grpc_front(chosen, [], options)
        await front.server.stop(0)
        return front.name, front.reason, type(front.server).__module__

    return asyncio.run(build())


def tls(tmp_path: Path) -> dict[str, Path]:
    return {"tls_cert_file": tmp_path / "server.pem", "tls_key_file": tmp_path / "server.key"}


async def health_over(chosen: ServerSettings) -> int:
    """Bind the chosen front on a free loopback port and ask its health service over a real channel."""
    front = build_grpc_front(chosen, [], OPTIONS)
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, front.server)
    port = front.listen("127.0.0.1:0", None)
    await front.server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=10
            )
        return reply.status
    finally:
        await front.server.stop(0)


def test_auto_is_native_without_tls_and_serves_calls(tmp_path: Path) -> None:
    name, reason, module = choose(settings(tmp_path))
    assert (name, reason, module) == ("native", "--grpc-front auto", "pygrpc_native.aio")
    assert asyncio.run(health_over(settings(tmp_path))) == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("wanted", ["auto", "native"])
def test_tls_always_gets_grpcio(tmp_path: Path, wanted: str) -> None:
    name, reason, module = choose(settings(tmp_path, grpc_front=wanted, **tls(tmp_path)))
    assert (name, reason) == ("grpcio", "pygrpc-native has no TLS")
    assert module.startswith("grpc.aio")


def test_an_option_the_native_front_refuses_gets_grpcio_with_the_reason(tmp_path: Path) -> None:
    name, reason, _ = choose(settings(tmp_path), [*OPTIONS, ("grpc.max_connection_age_ms", 60_000)])
    assert name == "grpcio"
    assert "grpc.max_connection_age_ms" in reason


def test_grpcio_on_request_and_when_native_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert choose(settings(tmp_path, grpc_front="grpcio"))[:2] == ("grpcio", "--grpc-front grpcio")
    wanted = settings(tmp_path, grpc_front="grpcio")
    assert asyncio.run(health_over(wanted)) == health_pb2.HealthCheckResponse.SERVING
    monkeypatch.setattr(grpc_front, "native_installed", lambda: False)
    assert choose(settings(tmp_path))[:2] == ("grpcio", "pygrpc-native is not installed")
    with pytest.raises(ValidationError, match="native needs pygrpc-native"):
        settings(tmp_path, grpc_front="native")


def test_a_busy_port_is_reported_as_unbindable_on_both_fronts(tmp_path: Path) -> None:
    async def bind_twice(wanted: str) -> int:
        first = build_grpc_front(settings(tmp_path, grpc_front=wanted), [], OPTIONS)
        port = first.listen("127.0.0.1:0", None)
        second = build_grpc_front(settings(tmp_path, grpc_front=wanted), [], OPTIONS)
        try:
            return second.listen(f"127.0.0.1:{port}", None)
        finally:
            await second.server.stop(0)
            await first.server.stop(0)

    assert asyncio.run(bind_twice("native")) == 0
    assert asyncio.run(bind_twice("grpcio")) == 0
