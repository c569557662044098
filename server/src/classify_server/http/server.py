"""uvicorn in the gRPC server's event loop: one process, one loop, one data plane for both protocols.

The socket is bound here, not by uvicorn, so a taken port fails start-up with a clear error (uvicorn
would log and call ``sys.exit``) and port 0 reports the port it got. Signals stay with the gRPC server's
handler: SIGTERM drains both servers together (app.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from classify_server.http.header_timeout import protocol_with_header_timeout

log = logging.getLogger(__name__)


def _drop_colour(record: logging.LogRecord) -> bool:
    """uvicorn adds an ANSI-coloured copy of some messages; it would become a field of every JSON line."""
    record.__dict__.pop("color_message", None)
    return True


def _listening_socket(host: str, port: int) -> socket.socket:
    """A TCP listener whose accepted connections get TCP_NODELAY from asyncio.

    asyncio sets TCP_NODELAY only on sockets whose protocol number is IPPROTO_TCP, and accepted sockets
    inherit it from the listener; ``socket.create_server`` leaves it 0. Without NODELAY every answer
    written as headers then body waited out the client's delayed ACK: a flat 40 ms a request.
    """
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restarts; not SO_REUSEPORT
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


class _InLoopServer(uvicorn.Server):
    """uvicorn's server without its own signal handlers (it would take SIGTERM from the gRPC server)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HttpServer:
    def __init__(
        self,
        app: FastAPI,
        host: str,
        port: int,
        *,
        cert_file: Path | None = None,
        key_file: Path | None = None,
        client_ca_file: Path | None = None,
        header_timeout: float = 10.0,
    ) -> None:
        self.host = host
        self.requested_port = port
        self.tls = cert_file is not None
        tls: dict[str, object] = {}
        if cert_file is not None and key_file is not None:
            tls = {"ssl_certfile": str(cert_file), "ssl_keyfile": str(key_file)}
            if client_ca_file is not None:
                tls |= {"ssl_ca_certs": str(client_ca_file), "ssl_cert_reqs": ssl.CERT_REQUIRED}
        self._config = uvicorn.Config(
            app,
            lifespan="off",
            log_config=None,  # the server's own logging set-up (plain or JSON) applies to uvicorn's loggers
            access_log=False,  # successful requests are never logged; failures are, by the error mapping
            server_header=False,
            http=protocol_with_header_timeout(header_timeout),  # uvicorn's h11 + a deadline on headers
            **tls,
        )
        self._server = _InLoopServer(self._config)
        logging.getLogger("uvicorn.error").addFilter(_drop_colour)
        self._task: asyncio.Task[None] | None = None
        self.port = 0

    def bind(self) -> socket.socket:
        try:
            sock = _listening_socket(self.host, self.requested_port)
        except OSError as exc:
            raise RuntimeError(
                f"cannot serve HTTP on {self.host}:{self.requested_port}: {exc.strerror or exc} "
                "(--http-port; -1 turns HTTP off)"
            ) from exc
        sock.set_inheritable(True)
        self.port = sock.getsockname()[1]
        return sock

    async def start(self) -> None:
        """Listen and serve in a task of the running loop; returns once uvicorn accepts connections."""
        sock = self.bind()
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="http-server")
        while not self._server.started:
            if self._task.done():
                self._task.result()  # a start-up failure (bad certificate) surfaces here
                raise RuntimeError("the HTTP server stopped during start-up")
            await asyncio.sleep(0.01)

    async def stop(self, grace_seconds: float) -> None:
        """Stop accepting, let requests in progress finish within the grace period, then close."""
        if self._task is None:
            return
        self._config.timeout_graceful_shutdown = max(grace_seconds, 0.1)
        self._server.should_exit = True
        await self._task
