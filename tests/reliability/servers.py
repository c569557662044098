"""Real server processes for the reliability harness, and what /proc says about them.

Starting, waiting for SERVING and stopping is ``classify_server.launcher``'s job (the test suite and the
benchmarks use it too); this adds the harness's constructor shape and the process figures it reports.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from classify_server.launcher import ServerLauncher


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


class Server(ServerLauncher):
    """One classify-server on loopback, its log in ``log_dir``; ``start`` after a stop or kill keeps the
    port, so clients reconnect to it."""

    def __init__(self, repository: Path, log_dir: Path, *extra: str, port: int | None = None) -> None:
        super().__init__(repository, *extra, port=port, http_port=0, log_dir=log_dir)
        self.repository: Path = repository

    def wait_serving(self, timeout: float | None = None) -> float:
        """Seconds from launch until SERVING; ServerLaunchError (a RuntimeError) if it died or was late."""
        return self.wait_ready(timeout)

    def figures(self) -> ProcessFigures:
        return process_figures(self.pid)
