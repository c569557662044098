"""What a batch-scoring job does to online callers' latency, at low priority and at normal, in one run.

    .venv/bin/python server/benchmarks/priority_isolation.py --model-repository /tmp/models [--seconds 10]

Starts one `classify-server` on loopback (serving_limits.py's helpers; only the one model copied into its
repository) and loads it with `classify bench` (batch 1, concurrency 16: the online callers) four times:
alone; beside a saturating `classify score` job at its default priority, low; beside the same job sent
at normal priority (what every job was before priorities); and alone again, last, so a shared machine's
drift shows. The job scores random images, 256 rows a call, 4 calls in flight, and is restarted for
each configuration; its progress is the rows its CSV gained while the online load ran.

It prints the online requests/s, p50 and p99, p99 as a ratio of the first 'alone', and the job's rows/s.
It measures, it does not assert: read the ratios within the run, not the absolute figures.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from serving_limits import BIN, bench, serving

JOB_IMAGES = 200_000


def line_count(path: Path) -> int:
    if not path.exists():
        return 0
    with path.open("rb") as file:
        return sum(1 for _ in file)


def start_job(target: str, model: str, source: Path, output: Path, priority: str) -> subprocess.Popen:
    """`classify score` over ``source`` at ``priority``; waits until its first rows are written."""
    output.unlink(missing_ok=True)
    job = subprocess.Popen(
        [
            str(BIN / "classify"),
            "score",
            "--target",
            target,
            "--model",
            model,
            "--input",
            str(source),
            "--output",
            str(output),
            "--batch-size",
            "256",
            "--in-flight",
            "4",
            "--priority",
            priority,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while line_count(output) < 2:
        if job.poll() is not None:
            raise SystemExit(f"classify score stopped: {job.stderr.read().decode() if job.stderr else ''}")
        if time.monotonic() > deadline:
            job.kill()
            raise SystemExit("classify score wrote no row in 120 s")
        time.sleep(0.2)
    return job


def stop_job(job: subprocess.Popen) -> None:
    job.terminate()
    try:
        job.wait(timeout=30)
    except subprocess.TimeoutExpired:
        job.kill()
        job.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-repository", type=Path, required=True, help="a repository with --model")
    parser.add_argument("--model", default="mnist-cnn", help="the model loaded (an image model)")
    parser.add_argument("--seconds", type=float, default=10.0, help="online load time per configuration")
    parser.add_argument("--concurrency", type=int, default=16, help="online requests in flight")
    parser.add_argument(
        "--server-arg", action="append", default=[], help="extra classify-server flag (repeat)"
    )
    args = parser.parse_args()
    if not (args.model_repository / args.model).is_dir():
        parser.error(f"{args.model_repository} has no {args.model}/ (classify-train ... --export it)")
    rows: list[tuple[str, dict, float | None]] = []
    with tempfile.TemporaryDirectory(prefix="classify-priority-") as work:
        repository = Path(work) / "models"
        shutil.copytree(args.model_repository / args.model, repository / args.model)
        source = Path(work) / "job.npy"
        np.save(source, np.random.default_rng(0).integers(0, 256, (JOB_IMAGES, 28, 28), dtype=np.uint8))
        output = Path(work) / "job.csv"
        with serving(repository, args.server_arg) as server:
            for name, priority in [
                ("alone", None),
                ("beside a score job at low (its default)", "low"),
                ("beside a score job at normal", "normal"),
                ("alone (again, last)", None),
            ]:
                print(f"{name} ...", flush=True)
                if priority is None:
                    rows.append(
                        (name, bench(server.target, args.model, 1, args.concurrency, args.seconds), None)
                    )
                    continue
                job = start_job(server.target, args.model, source, output, priority)
                try:
                    before, started = line_count(output), time.monotonic()
                    step = bench(server.target, args.model, 1, args.concurrency, args.seconds)
                    job_rate = (line_count(output) - before) / (time.monotonic() - started)
                finally:
                    stop_job(job)
                rows.append((name, step, job_rate))
    base = rows[0][1]["p99_ms"]
    print(
        f"\n{args.model}: online batch 1, concurrency {args.concurrency}, "
        f"{args.seconds:g} s per configuration"
    )
    print(
        f"{'configuration':<42} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'p99/alone':>9} {'errors':>6} "
        f"{'job rows/s':>10}"
    )
    for name, step, job_rate in rows:
        ratio = step["p99_ms"] / base if base else float("nan")
        job = f"{job_rate:>10,.0f}" if job_rate is not None else f"{'':>10}"
        print(
            f"{name:<42} {step['requests_per_second']:>8,.0f} {step['p50_ms']:>7.2f} {step['p99_ms']:>7.2f} "
            f"{ratio:>9.2f} {step['errors']!s:>6} {job}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
