"""Start a real ``classify-server`` process on loopback, wait until it serves, stop it cleanly.

The test suite, the reliability harness and the benchmarks all run the server this way, so the steps
live here once: pick a free port, launch the installed command with its flags, poll grpc.health.v1 until
SERVING, and stop with SIGTERM (the graceful drain), killing only when it ignores the signal. Errors
carry the end of the server's log, which is what explains a failed start.

This module imports grpc and the health stubs only, never TensorFlow: the server process pays for
TensorFlow, whoever launches it does not.

    with running_server("models", "--max-batch-size", "32", log_dir=Path("logs")) as server:
        Client(server.target).classify("mnist-cnn", images=digits)
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Self, TypedDict, Unpack

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

__all__ = [
    "LOG_TAIL_LINES",
    "LOOPBACK",
    "START_TIMEOUT_SECONDS",
    "STOP_TIMEOUT_SECONDS",
    "LaunchOptions",
    "ServerLaunchError",
    "ServerLauncher",
    "ServerStopTimeout",
    "free_port",
    "health_status",
    "running_server",
]

LOOPBACK = "127.0.0.1"
START_TIMEOUT_SECONDS = 180.0  # four models load and warm on a busy 2-core machine well within this
STOP_TIMEOUT_SECONDS = 60.0
LOG_TAIL_LINES = 200
# Poll with fast reconnects: gRPC's default reconnect backoff (1 s and growing) would add up to seconds
# between the server listening and the launcher noticing, which start-up figures would include.
_FAST_RECONNECT = (
    ("grpc.initial_reconnect_backoff_ms", 20),
    ("grpc.min_reconnect_backoff_ms", 20),
    ("grpc.max_reconnect_backoff_ms", 50),
)
_PROBE_SECONDS = 0.5
_POLL_SECONDS = 0.02


class LaunchOptions(TypedDict, total=False):
    """The keyword options of ``ServerLauncher``, for ``running_server``."""

    host: str
    port: int | None
    metrics_port: int | None
    http_port: int | None
    log_dir: Path | None
    env: Mapping[str, str] | None
    executable: Path | None
    probe_credentials: grpc.ChannelCredentials | None
    start_timeout: float


class ServerLaunchError(RuntimeError):
    """The server exited during start-up, or did not reach SERVING in time; the message has its log."""


class ServerStopTimeout(RuntimeError):
    """The server ignored SIGTERM for the whole timeout and was killed; the message has its log."""


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def health_status(
    target: str,
    service: str = "",
    timeout: float = 2.0,
    credentials: grpc.ChannelCredentials | None = None,
) -> str:
    """SERVING / NOT_SERVING / SERVICE_UNKNOWN, or UNREACHABLE when nothing answers yet."""
    channel = grpc.secure_channel(target, credentials) if credentials else grpc.insecure_channel(target)
    with channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except grpc.RpcError as exc:
            return "SERVICE_UNKNOWN" if exc.code() == grpc.StatusCode.NOT_FOUND else "UNREACHABLE"
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


class ServerLauncher:
    """One ``classify-server`` process on loopback; ``start`` again after a stop keeps the same port.

    ``args`` are further classify-server flags (TLS files, ``--auth-tokens-file``, ``--config-file``,
    batching settings...); it listens on ``host``, loopback by default (another 127.0.0.x address lets
    several servers share one port, as replicas behind one DNS name do).
    ``metrics_port`` None leaves the flag out (the server's default); the default 0 picks a free port,
    so several servers run side by side; ``http_port`` is the same for the HTTP/JSON APIs, but left out
    by default (the server's 8501): pass 0 to run several side by side, -1 to turn HTTP off. With
    ``log_dir`` the server's stdout and stderr go to
    ``log_dir/server-<port>.log`` (appended across restarts); without it they are dropped.
    ``probe_credentials`` are what the readiness probe connects with to a TLS server;
    ``start_timeout`` is how long ``wait_ready`` (and ``with``) waits for SERVING by default.
    """

    def __init__(
        self,
        model_repository: Path | str | None,
        *args: str,
        host: str = LOOPBACK,
        port: int | None = None,
        metrics_port: int | None = 0,
        http_port: int | None = None,
        log_dir: Path | None = None,
        env: Mapping[str, str] | None = None,
        executable: Path | None = None,
        probe_credentials: grpc.ChannelCredentials | None = None,
        start_timeout: float = START_TIMEOUT_SECONDS,
    ) -> None:
        self.repository = Path(model_repository) if model_repository is not None else None
        self.args = args
        self.host = host
        self.port = port or free_port(host)
        self.metrics_port = metrics_port
        self.http_port = http_port
        self.log_dir = log_dir
        self.env = env
        # The classify-server installed beside this interpreter, so a virtualenv's own copy runs.
        self.executable = executable or Path(sys.executable).parent / "classify-server"
        self.probe_credentials = probe_credentials
        self.start_timeout = start_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        # Seconds from the last launch to SERVING, once ``wait_ready`` saw it (start-up figures).
        self.ready_seconds: float | None = None
        self._launched_at = 0.0

    # -- What it is ----------------------------------------------------------------------------------------

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def log_path(self) -> Path | None:
        if self.log_dir is None:
            return None
        # Servers sharing a port on different loopback addresses keep logs apart.
        name = f"server-{self.port}.log" if self.host == LOOPBACK else f"server-{self.host}-{self.port}.log"
        return self.log_dir / name

    def command(self) -> list[str]:
        command = [str(self.executable)]
        if self.repository is not None:
            command += ["--model-repository", str(self.repository)]
        if self.host != LOOPBACK:  # the server's default --host
            command += ["--host", self.host]
        command += ["--port", str(self.port)]
        if self.metrics_port is not None:
            command += ["--metrics-port", str(self.metrics_port)]
        if self.http_port is not None:
            command += ["--http-port", str(self.http_port)]
        return [*command, *self.args]

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError("the server has not been started")
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        """Everything the server wrote (empty when output is dropped or nothing was written yet)."""
        path = self.log_path
        return path.read_text(errors="replace") if path is not None and path.exists() else ""

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        if self.log_path is None:
            return "(the server's output was not kept: give the launcher a log_dir)"
        return "\n".join(self.log().splitlines()[-lines:])

    def status(self, service: str = "", timeout: float = 2.0) -> str:
        """The server's health for ``service`` ("" is the server as a whole), as ``health_status``."""
        return health_status(self.target, service, timeout, self.probe_credentials)

    # -- Lifecycle -----------------------------------------------------------------------------------------

    def start(self) -> Self:
        """Launch the process (it returns at once; ``wait_ready`` waits for SERVING)."""
        if self.alive():
            raise RuntimeError(f"the server on {self.target} is already running")
        environment = {**os.environ, **self.env} if self.env is not None else None
        path = self.log_path
        if path is None:
            output: int = subprocess.DEVNULL
            self._launch(output, environment)
        else:
            with path.open("ab") as log_file:  # the child keeps its own copy of the descriptor
                self._launch(log_file.fileno(), environment)
        return self

    def _launch(self, output: int, environment: dict[str, str] | None) -> None:
        self.starts += 1
        self.ready_seconds = None
        self._launched_at = time.monotonic()
        self.process = subprocess.Popen(
            self.command(), stdout=output, stderr=subprocess.STDOUT, env=environment
        )

    def wait_ready(self, timeout: float | None = None, service: str = "") -> float:
        """Seconds from launch until ``service`` is SERVING; ServerLaunchError if it exits or is late."""
        if self.process is None:
            raise RuntimeError("start() the server before waiting for it")
        timeout = self.start_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        with self._probe_channel() as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise ServerLaunchError(
                        f"server exited {self.process.returncode} during start-up:\n{self.log_tail()}"
                    )
                if self._serving(stub, service):
                    self.ready_seconds = time.monotonic() - self._launched_at
                    return self.ready_seconds
                time.sleep(_POLL_SECONDS)
        raise ServerLaunchError(f"server not SERVING after {timeout} s:\n{self.log_tail()}")

    def _probe_channel(self) -> grpc.Channel:
        if self.probe_credentials is not None:
            return grpc.secure_channel(self.target, self.probe_credentials, options=_FAST_RECONNECT)
        return grpc.insecure_channel(self.target, options=_FAST_RECONNECT)

    @staticmethod
    def _serving(stub: health_pb2_grpc.HealthStub, service: str) -> bool:
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=_PROBE_SECONDS)
        except grpc.RpcError:
            return False
        return reply.status == health_pb2.HealthCheckResponse.SERVING

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> int | None:
        """SIGTERM (the server drains accepted calls), then its exit code; None if it never started.

        A server still running after ``timeout`` is killed and ServerStopTimeout raised.
        """
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise ServerStopTimeout(
                    f"server ignored SIGTERM for {timeout} s and was killed:\n{self.log_tail()}"
                ) from None
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL: the crash case, nothing is drained."""
        if self.alive():
            assert self.process is not None
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> Self:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.kill()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


@contextmanager
def running_server(
    model_repository: Path | str | None, *args: str, **options: Unpack[LaunchOptions]
) -> Iterator[ServerLauncher]:
    """A started, SERVING server for the ``with`` block, stopped with SIGTERM after it.

    Takes the same arguments as ``ServerLauncher``.
    """
    with ServerLauncher(model_repository, *args, **options) as server:
        yield server
