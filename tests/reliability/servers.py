"""Real server processes for the reliability harness, and what /proc says about them.

The pytest fixtures in tests/conftest.py do the same for the test suite; the harness is a plain script
(no pytest), so it has its own small copy of the start-and-wait logic.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serving(target: str, timeout: float = 2.0) -> bool:
    with grpc.insecure_channel(target) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=timeout
            )
        except grpc.RpcError:
            return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


@dataclass(frozen=True)
class ProcessFigures:
    """Resident memory, open file descriptors and threads of a process, from /proc."""

    rss_bytes: int
    fds: int
    threads: int


def process_figures(pid: int) -> ProcessFigures:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    rss_kib = int(fields["VmRSS"].split()[0])
    return ProcessFigures(rss_kib * 1024, len(os.listdir(f"/proc/{pid}/fd")), int(fields["Threads"]))


class Server:
    """One classify-server on loopback; ``restart`` keeps its port so clients reconnect to it."""

    def __init__(self, repository: Path, log_dir: Path, *extra: str, port: int | None = None) -> None:
        self.repository = repository
        self.log_dir = log_dir
        self.extra = extra
        self.port = port or free_port()
        self.target = f"127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"server-{self.port}.log"

    def start(self) -> Server:
        self.starts += 1
        log = self.log_path.open("ab")
        command = [
            str(BIN / "classify-server"),
            "--model-repository",
            str(self.repository),
            "--port",
            str(self.port),
            "--metrics-port",
            "0",
            "--http-port",
            "0",
            *self.extra,
        ]
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        return self

    def wait_serving(self, timeout: float = 180.0) -> float:
        """Seconds until SERVING; raises if the process died or took too long."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"server exited during start-up; log: {self.log_path}")
            if serving(self.target):
                return time.monotonic() - started
            time.sleep(0.1)
        raise RuntimeError(f"server not SERVING after {timeout} s; log: {self.log_path}")

    def kill(self) -> None:
        """SIGKILL: the crash case, nothing is drained."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self, timeout: float = 60.0) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise
        return self.process.returncode

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def figures(self) -> ProcessFigures:
        assert self.process is not None
        return process_figures(self.process.pid)
