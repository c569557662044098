"""Which gRPC server answers the gRPC port: pygrpc-native's compiled front, or grpcio's own grpc.aio.

pygrpc-native (docs/serving.md, "gRPC front") runs HTTP/2 framing, flow control, deadlines and the
unary and server-streaming calls' transport in Rust, outside the GIL, and hands each call to the same
grpc.aio servicers on this event loop; bidirectional streams, reflection and interceptors' calls go to a
grpc.aio server behind it on a Unix socket. It has no TLS and refuses a few server options (connection
age and idleness): those configurations get grpcio, and the log line says why.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import grpc

if TYPE_CHECKING:
    from classify_server.settings import ServerSettings

log = logging.getLogger(__name__)

GrpcFrontName = Literal["native", "grpcio", "auto"]
NATIVE_DISTRIBUTION = "pygrpc-native"


def native_installed() -> bool:
    return importlib.util.find_spec("pygrpc_native") is not None


@dataclass(frozen=True)
class GrpcFront:
    """The server object answering the gRPC port, the front's name and why that one was taken."""

    server: grpc.aio.Server
    name: Literal["native", "grpcio"]
    reason: str

    def listen(self, address: str, credentials: grpc.ServerCredentials | None) -> int:
        """Bind the port; 0 when it cannot be bound (grpcio returns 0, pygrpc-native raises)."""
        try:
            if credentials is not None:
                return self.server.add_secure_port(address, credentials)
            return self.server.add_insecure_port(address)
        except RuntimeError as exc:
            log.error("cannot bind %s: %s", address, exc, extra={"event": "bind_failed"})
            return 0


def build_grpc_front(
    settings: ServerSettings,
    interceptors: Sequence[grpc.aio.ServerInterceptor],
    options: list[tuple[str, Any]],
) -> GrpcFront:
    """The server ``--grpc-front`` asks for, falling back to grpcio where the native front cannot serve."""
    wanted: GrpcFrontName = settings.grpc_front
    if wanted == "grpcio":
        return _grpcio(interceptors, options, "--grpc-front grpcio")
    if settings.tls_cert_file is not None:
        return _grpcio(interceptors, options, f"{NATIVE_DISTRIBUTION} has no TLS")
    if not native_installed():
        # `native` without the package is refused by the settings' validation; only `auto` gets here.
        return _grpcio(interceptors, options, f"{NATIVE_DISTRIBUTION} is not installed")
    import pygrpc_native.aio

    try:
        server = pygrpc_native.aio.server(interceptors=list(interceptors), options=options)
    except (ValueError, NotImplementedError) as exc:  # a server option it cannot honour
        return _grpcio(interceptors, options, f"{NATIVE_DISTRIBUTION}: {exc}")
    return GrpcFront(server, "native", f"--grpc-front {wanted}")


def _grpcio(
    interceptors: Sequence[grpc.aio.ServerInterceptor], options: list[tuple[str, Any]], reason: str
) -> GrpcFront:
    return GrpcFront(grpc.aio.server(interceptors=list(interceptors), options=options), "grpcio", reason)
