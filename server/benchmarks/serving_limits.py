"""Served performance against the in-process limit, in one run on one machine (`make bench`).

1. In-process limit: each model's SavedModel signature called directly, at batch 1, 32 and 128, in this
   process (the same call the server's runner makes, with the server's thread settings).
2. A bare gRPC echo on the same front (grpc_fronts.py), 64 and 1 concurrent: what the transport alone
   allows.
3. Served: a real `classify-server` on loopback, loaded by `classify bench` (a separate process, whose
   own CPU per request is printed beside each figure), for the request shapes of the floors, then a 10x
   open-loop overload with the default settings.
4. Start-up time to SERVING with all four models, and the server's resident memory.

It prints a table of the figures, the ratios and the floor each ratio must meet. It measures; it does not
assert: the machines are shared and noisy, so read the ratios (taken within one run) rather than the
absolute numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from classify_client.cli.load_generator import generated_inputs
from classify_client.conversions import Inputs
from classify_server.grpc_front import native_installed
from classify_server.launcher import ServerLauncher, ServerLaunchError, running_server
from classify_server.serving.repository import version_dirs
from classify_server.settings import ServerSettings

BIN = Path(sys.executable).parent
MODELS = ("mnist-softmax", "mnist-mlp", "mnist-cnn", "imdb-lstm")
# The served figures come from `classify bench`'s generated inputs; the in-process limit is measured on
# the same ones. A variable-length text graph costs what its longest review costs, so one short sentence
# repeated would overstate the limit several-fold against 20-200-word requests.
GENERATED_POOL = 1024
OVERLOAD_SECONDS = 10.0


class InProcess(NamedTuple):
    rows_per_second: float
    median_seconds: float  # per call
    cpu_us_per_row: float  # this process's CPU, all threads: what a row costs the two cores


@dataclass
class Floor:
    name: str
    served: float
    limit: float
    required: float  # served / limit must reach this
    unit: str
    bench_cpu_us: float = 0.0  # classify bench's own CPU per request: a slow client, not a slow server

    def passed(self) -> bool:
        return self.served >= self.required * self.limit

    def row(self) -> str:
        ratio = self.served / self.limit if self.limit else float("nan")
        verdict = "ok" if self.passed() else "BELOW"
        return (
            f"{self.name:<58} {self.served:>10,.0f} {self.limit:>10,.0f} {self.unit:<9} "
            f"{ratio:>6.2f} >= {self.required:<4} {verdict:<5} {self.bench_cpu_us:>9,.0f}"
        )


def server_threads() -> tuple[int, int]:
    """The intra- and inter-op threads the server started beside this will use: CLASSIFY_*_OP_THREADS
    (which it reads too), else its own defaults, so the in-process limit runs with the same pools."""
    defaults = ServerSettings.model_fields
    return (
        int(os.environ.get("CLASSIFY_INTRA_OP_THREADS", defaults["intra_op_threads"].default)),
        int(os.environ.get("CLASSIFY_INTER_OP_THREADS", defaults["inter_op_threads"].default)),
    )


def configure_threads(intra: int, inter: int) -> None:
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(intra)
    tf.config.threading.set_inter_op_parallelism_threads(inter)


def newest_signature(repository: Path, name: str) -> tuple[dict, Callable[[np.ndarray], np.ndarray]]:
    """The newest version of a model: its model.json, and its serving signature as a call from a batch
    to the probabilities (the call the server's runner makes)."""
    import tensorflow as tf

    version_dir = version_dirs(repository / name)[-1]
    meta = json.loads((version_dir / "model.json").read_text())
    function = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    input_name, output_name = meta["input"]["name"], meta["output"]["name"]

    def call(rows: np.ndarray) -> np.ndarray:
        return function(**{input_name: tf.constant(rows)})[output_name].numpy()

    return meta, call


def in_process_rates(repository: Path, seconds: float) -> dict[str, dict[int, InProcess]]:
    """rows/s, median seconds per call and CPU per row of each model's signature at batch 1, 32, 128."""
    rates: dict[str, dict[int, InProcess]] = {}
    for name in MODELS:
        meta, call = newest_signature(repository, name)
        rates[name] = {}
        pool = generated_inputs(meta["input"]["kind"], GENERATED_POOL)
        for batch in (1, 32, 128):
            batches = itertools.cycle(
                [in_process_batch(pool, start, batch) for start in range(0, GENERATED_POOL, batch)]
            )
            for _ in range(5):  # warm the shape
                call(next(batches))
            durations = []
            deadline = time.perf_counter() + seconds
            cpu_started = time.process_time()
            while time.perf_counter() < deadline:
                rows = next(batches)
                started = time.perf_counter()
                call(rows)
                durations.append(time.perf_counter() - started)
            cpu_us_per_row = 1e6 * (time.process_time() - cpu_started) / (batch * len(durations))
            total = sum(durations)
            rates[name][batch] = InProcess(
                batch * len(durations) / total, float(np.median(durations)), cpu_us_per_row
            )
    return rates


def in_process_batch(pool: Inputs, start: int, rows: int) -> np.ndarray:
    """Rows ``start`` to ``start + rows`` of the pool, as the signature takes them."""
    if pool.images is not None:
        return pool.images[start : start + rows]
    return np.array((pool.texts or [])[start : start + rows], dtype=object)


@contextmanager
def serving(repository: Path, extra: list[str]) -> Iterator[ServerLauncher]:
    """A classify-server on loopback, SERVING (``ready_seconds`` says after how long), then stopped."""
    with tempfile.TemporaryDirectory(prefix="classify-bench-") as logs:
        try:
            with running_server(
                repository, *extra, metrics_port=-1, http_port=-1, log_dir=Path(logs), start_timeout=300
            ) as server:
                yield server
        except ServerLaunchError as exc:
            raise SystemExit(f"classify-server did not reach SERVING: {exc}") from None


def require_front(server: ServerLauncher, front: str) -> None:
    """Stop unless the server's start-up line says it serves on ``front``: figures of another front
    must not be reported (or set beside an echo) as this one's."""
    found = re.search(r"; (\w+) gRPC front: ", server.log())
    if found is None:
        raise SystemExit("the server's start-up line does not name its gRPC front")
    if found.group(1) != front:
        raise SystemExit(
            f"the server serves gRPC on {found.group(1)}, not {front}: an option only grpcio takes "
            "(such as connection ageing) makes it fall back"
        )


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def bench(target: str, model: str, batch: int, concurrency: int, seconds: float) -> dict:
    result = subprocess.run(
        [
            str(BIN / "classify"),
            "bench",
            "--target",
            target,
            "--model",
            model,
            "--batch-size",
            str(batch),
            "--concurrency",
            str(concurrency),
            "--duration",
            str(seconds),
            "--warmup",
            "2",
            "--json",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode not in (0, 1):
        raise SystemExit(f"classify bench failed: {result.stderr}")
    return json.loads(result.stdout)["steps"][0]


def served_row(name: str, step: dict, limit: float, required: float, unit: str) -> Floor:
    """A served figure of one `classify bench` step (images/s or req/s) against its limit, with the
    bench's own CPU."""
    served = step["rows_per_second" if unit == "images/s" else "requests_per_second"]
    return Floor(name, served, limit, required, unit, step.get("client_cpu_us_per_request") or 0.0)


def overload_figures(target: str, seconds: float) -> tuple[float, float, float | None, float | None]:
    """A 10x open-loop flood of 128-image mnist-cnn requests on the server as it is configured: the
    unloaded p99, the accepted and shed p99 (ms) and the accepted p99 over the unloaded one. The flood
    is the reliability harness's (tests/reliability/load.py), so both report the same measurement. It
    lasts at least OVERLOAD_SECONDS: the first 0.1-0.2 s of any flood queue before it is recognised
    (docs/reliability.md), and a shorter flood would measure little else."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "reliability"))
    from load import overload  # the harness's open loop: it times refusals too, not only successes

    seconds = max(seconds, OVERLOAD_SECONDS)
    result = asyncio.run(overload(target, "mnist-cnn", "image", batch_size=128, seconds=seconds))
    return (
        result.unloaded_p99_ms,
        result.overload.p99("OK") or float("nan"),
        result.overload.p99("RESOURCE_EXHAUSTED"),
        result.accepted_p99_ratio,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model-repository", type=Path, required=True, help="a repository with all four models"
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="measurement time per step")
    parser.add_argument(
        "--server-arg", action="append", default=[], help="extra classify-server flag (repeat)"
    )
    parser.add_argument(
        "--grpc-front", choices=("native", "grpcio", "auto"), default="auto", help="the server's --grpc-front"
    )
    args = parser.parse_args()
    from grpc_fronts import echo_figures  # grpc_fronts imports this module: import it once we run

    front = "native" if args.grpc_front != "grpcio" and native_installed() else "grpcio"
    configure_threads(*server_threads())
    print(f"in-process limits ({args.seconds:g} s per figure) ...", flush=True)
    limits = in_process_rates(args.model_repository, args.seconds)
    for name, by_batch in limits.items():
        figures = ", ".join(
            f"batch {b}: {rate:,.0f} rows/s ({1e3 * median:.2f} ms, {cpu:,.0f} µs CPU a row)"
            for b, (rate, median, cpu) in by_batch.items()
        )
        print(f"  {name:<14} {figures}")
    print(f"bare echo on the {front} front (64 and 1 concurrent) ...", flush=True)
    echo_rate, _, _, echo_cpu = echo_figures(front, 64, args.seconds)
    _, echo_p50, _, _ = echo_figures(front, 1, args.seconds)
    print(f"  64 concurrent: {echo_rate:,.0f} calls/s ({echo_cpu:,.0f} µs server CPU a call)")
    print(f"  1 concurrent: p50 {echo_p50:.2f} ms")
    with serving(args.model_repository, ["--grpc-front", args.grpc_front, *args.server_arg]) as server:
        assert server.ready_seconds is not None
        target, startup = server.target, server.ready_seconds
        require_front(server, front)  # the echo ran on it
        memory = resident_mb(server.pid)
        floors: list[Floor] = []
        for name in MODELS[:3]:
            step = bench(target, name, 128, 4, args.seconds)
            floors.append(
                served_row(f"{name}: 128-image requests, 4 concurrent", step, limits[name][128][0], 0.8,
                           "images/s")
            )  # fmt: skip
        step = bench(target, "mnist-cnn", 1, 64, args.seconds)
        floors.append(
            served_row("mnist-cnn: batch-1, 64 concurrent vs in-process batch 32", step,
                       limits["mnist-cnn"][32][0], 0.5, "req/s")
        )  # fmt: skip
        floors.append(
            served_row(f"mnist-cnn: batch-1, 64 concurrent vs bare echo ({front})", step, echo_rate, 0.5,
                       "req/s")
        )  # fmt: skip
        step = bench(target, "imdb-lstm", 1, 64, args.seconds)
        floors.append(
            served_row("imdb-lstm: raw text batch-1, 64 concurrent vs batch 32", step,
                       limits["imdb-lstm"][32][0], 0.5, "req/s")
        )  # fmt: skip
        single = bench(target, "mnist-cnn", 1, 1, args.seconds)
        memory = max(memory, resident_mb(server.pid))
        print("10x open-loop overload (128-image mnist-cnn requests) ...", flush=True)
        unloaded_p99, accepted_p99, shed_p99, overload_ratio = overload_figures(target, args.seconds)
        memory = max(memory, resident_mb(server.pid))
    print(f"\nfront: {front}; bench CPU is classify bench's own CPU per request")
    print(f"{'floor':<58} {'served':>10} {'limit':>10} {'unit':<9} {'ratio':>6} {'':>12} {'bench µs':>9}")
    for floor in floors:
        print(floor.row())
    in_process_ms = 1e3 * limits["mnist-cnn"][1][1]
    latency_bound = echo_p50 + in_process_ms + 0.3
    checks = [
        (
            "mnist-cnn: 1 concurrent batch-1 p50 vs echo p50 + in-process call + 0.3 ms",
            f"{single['p50_ms']:.2f} vs {echo_p50:.2f}+{in_process_ms:.2f}+0.3 ms",
            single["p50_ms"] <= latency_bound,
        ),
        (
            "10x overload, default settings: accepted p99 / unloaded p99 (<= 2)",
            f"{accepted_p99:.1f} / {unloaded_p99:.1f} ms = {overload_ratio or float('nan'):.2f}",
            overload_ratio is not None and overload_ratio <= 2,
        ),
        (
            "10x overload, default settings: shed answers p99 (<= 20 ms)",
            "none shed" if shed_p99 is None else f"{shed_p99:.1f} ms",
            shed_p99 is not None and shed_p99 <= 20,
        ),
        ("start-up to SERVING with all four models (<= 10 s)", f"{startup:.1f} s", startup <= 10),
        ("resident memory with all four models (<= 1500 MB)", f"{memory:,.0f} MB", memory <= 1500),
    ]
    for name, figure, passed in checks:
        print(f"{name:<72} {figure:>30} {'ok' if passed else 'BELOW'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
