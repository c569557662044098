"""Faults under a batch-scoring job: the server killed and restarted mid-job, the job itself killed.

Both drive the real `classify` command in a subprocess and read its output file, so they test exactly
what a user runs. Shared by the pytest tests and the harness.
"""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from servers import Server

CLASSIFY = str(Path(sys.executable).parent / "classify")


def score_command(target: str, model: str, source: Path, output: Path, *extra: str) -> list[str]:
    # --timeout bounds each call's retries: a restart on a busy 2-core machine can take 20-40 s.
    return [
        CLASSIFY, "score", "--target", target, "--model", model, "--input", str(source),
        "--output", str(output), "--timeout", "120", "--max-attempts", "60", *extra,
    ]  # fmt: skip


def complete_rows(output: Path) -> int:
    """Rows the job has written so far (complete lines after the CSV header)."""
    if not output.exists():
        return 0
    return max(output.read_bytes().count(b"\n") - 1, 0)


def wait_for_rows(process: subprocess.Popen[str], output: Path, rows: int, timeout: float = 300) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        written = complete_rows(output)
        if written >= rows:
            return written
        if process.poll() is not None:
            raise RuntimeError(f"score job ended (exit {process.returncode}) before {rows} rows")
        time.sleep(0.05)
    raise RuntimeError(f"score job wrote fewer than {rows} rows in {timeout} s")


@dataclass(frozen=True)
class OutputCheck:
    rows: int
    distinct: int
    in_order: bool
    errors: int

    def exactly_once(self, expected: int) -> bool:
        return self.rows == self.distinct == expected and self.in_order and self.errors == 0


def check_output(output: Path) -> OutputCheck:
    with output.open(newline="", encoding="utf-8") as stream:
        records = list(csv.DictReader(stream))
    indices = [int(record["index"]) for record in records]
    return OutputCheck(
        rows=len(records),
        distinct=len(set(indices)),
        in_order=indices == list(range(len(indices))),
        errors=sum(1 for record in records if record["error"]),
    )


@dataclass(frozen=True)
class RestartResult:
    rows: int
    killed_after_rows: int
    restart_seconds: float
    job_seconds: float
    exit_code: int
    check: OutputCheck
    stderr: str


def score_through_restart(
    server: Server, model: str, source: Path, rows: int, output: Path, *, kill_at: float = 0.3
) -> RestartResult:
    """Run `classify score` over ``rows`` rows; SIGKILL the server after ``kill_at`` of them, restart it
    on the same port, and let the job finish on the client's retries."""
    command = score_command(server.target, model, source, output, "--limit", str(rows))
    started = time.monotonic()
    job = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        killed_after = wait_for_rows(job, output, int(rows * kill_at))
        server.kill()
        server.start()
        restart_seconds = server.wait_serving()
        _, stderr = job.communicate(timeout=600)
    finally:
        if job.poll() is None:
            job.kill()
            job.wait()
    return RestartResult(
        rows=rows,
        killed_after_rows=killed_after,
        restart_seconds=restart_seconds,
        job_seconds=time.monotonic() - started,
        exit_code=job.returncode,
        check=check_output(output),
        stderr=stderr,
    )


@dataclass(frozen=True)
class ResumeResult:
    killed_after_rows: int
    resumed_from: int
    exit_code: int
    check: OutputCheck
    stderr: str


def score_killed_and_resumed(
    target: str, model: str, source: Path, rows: int, output: Path, *, kill_at: float = 0.4
) -> ResumeResult:
    """SIGKILL a scoring job part way, then run it again with --resume."""
    command = score_command(target, model, source, output, "--limit", str(rows), "--batch-size", "64")
    job = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        killed_after = wait_for_rows(job, output, int(rows * kill_at))  # type: ignore[arg-type]
        job.send_signal(signal.SIGKILL)
        job.wait()
    finally:
        if job.poll() is None:
            job.kill()
            job.wait()
    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=600)
    marker = "resuming after "
    line = next((ln for ln in resumed.stderr.splitlines() if ln.startswith(marker)), "")
    resumed_from = int(line[len(marker) :].split()[0]) if line else -1
    return ResumeResult(killed_after, resumed_from, resumed.returncode, check_output(output), resumed.stderr)
