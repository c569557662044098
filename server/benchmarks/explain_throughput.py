"""Explain's served cost against its in-process limit, and what explain traffic does to Classify latency.

1. In-process: mnist-cnn's ``explain_integrated_gradients`` signature (tf.saved_model.load, the server's
   thread settings) on 32 digits (`classify bench`'s generated ones) at 32 steps, ms per call: once as
   one call of all 32, once cut as the server cuts it (bounded executions of --max-batch-size rows).
2. Served: the same request to a real classify-server over gRPC (Client.explain), one at a time, ms per
   request; served / in-process throughput is printed beside its floor (0.8). The in-process calls run
   in this process while the server is up, taking turns with the served ones call by call.
3. Classify batch-1 latency (p50, p99) on mnist-cnn at one request in flight, measured by `classify
   bench` in its own process, alone and then while this process keeps one explain request in flight;
   the ratios, and the p50's and p99's increases in units of one bounded explain execution: what a
   Classify batch may have to wait for when the two take turns on the model's slots.

It measures and prints; it asserts nothing (shared machines are noisy: read the ratios, taken in one run).

    python server/benchmarks/explain_throughput.py --model-repository models --seconds 10
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from serving_limits import bench, configure_threads, server_threads, serving

from classify_client import Client
from classify_client.cli.load_generator import generated_inputs
from classify_server.serving.explain_runner import rows_per_item
from classify_server.settings import ServerSettings

MODEL = "mnist-cnn"
METHOD = "integrated_gradients"
IMAGES = 32
STEPS = 32
FLOOR = 0.8  # served explain throughput / in-process


def latest_version(repository: Path) -> Path:
    versions = [p for p in (repository / MODEL).iterdir() if p.name.isdigit()]
    if not versions:
        raise SystemExit(f"{repository / MODEL} has no version: train it first (classify-train all --quick)")
    return max(versions, key=lambda p: int(p.name))


def max_batch_size(server_args: list[str]) -> int:
    """The server's --max-batch-size (flag, else its default): the bound of one explain execution."""
    if "--max-batch-size" in server_args:
        return int(server_args[server_args.index("--max-batch-size") + 1])
    return int(ServerSettings.model_fields["max_batch_size"].default)


def in_process_explainer(version_dir: Path, images: np.ndarray, chunk: int) -> Callable[[], None]:
    """Explain ``images`` by calling the signature directly, ``chunk`` items per call."""
    import tensorflow as tf

    signature = tf.saved_model.load(str(version_dir)).signatures[f"explain_{METHOD}"]

    def explain_all() -> None:
        for start in range(0, len(images), chunk):
            rows = images[start : start + chunk]
            answer = signature(
                images=tf.constant(rows), targets=tf.fill([len(rows)], -1), steps=tf.constant(STEPS)
            )
            answer["attributions"].numpy()

    return explain_all


def interleaved_medians(calls: dict[str, Callable[[], None]], seconds: float) -> dict[str, float]:
    """Median ms of each call, taking turns call by call: on a shared machine a load that comes and goes
    then touches every figure alike, and the ratios stay fair."""
    for call in calls.values():  # trace and warm every shape
        for _ in range(2):
            call()
    durations: dict[str, list[float]] = {name: [] for name in calls}
    deadline = time.perf_counter() + seconds * len(calls)
    while time.perf_counter() < deadline or min(map(len, durations.values())) < 5:
        for name, call in calls.items():
            started = time.perf_counter()
            call()
            durations[name].append(time.perf_counter() - started)
    return {name: 1e3 * float(np.median(values)) for name, values in durations.items()}


class ExplainTraffic:
    """One explain request in flight, back to back, on a thread of its own, until stopped."""

    def __init__(self, target: str, images: np.ndarray) -> None:
        self._target, self._images = target, images
        self._stop = threading.Event()
        self.requests = 0
        self.seconds = 0.0
        self._started = 0.0
        self.errors: list[str] = []
        self._thread = threading.Thread(target=self._run, name="explain-traffic", daemon=True)

    def __enter__(self) -> ExplainTraffic:
        self._started = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.seconds = time.perf_counter() - self._started

    def _run(self) -> None:
        with Client(self._target, timeout=120) as client:
            while not self._stop.is_set():
                try:
                    client.explain(MODEL, images=self._images, method=METHOD, steps=STEPS)
                    self.requests += 1
                except Exception as exc:  # reported after the run; the figure is void then
                    self.errors.append(str(exc))
                    return


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-repository", type=Path, required=True, help="a repository with mnist-cnn")
    parser.add_argument("--seconds", type=float, default=10.0, help="measurement time per figure")
    parser.add_argument(
        "--server-arg", action="append", default=[], help="extra classify-server flag (repeat)"
    )
    args = parser.parse_args()
    version_dir = latest_version(args.model_repository)
    images = generated_inputs("image", IMAGES).images
    assert images is not None
    chunk = max(1, max_batch_size(args.server_arg) // rows_per_item(METHOD, STEPS))
    configure_threads(*server_threads())
    print(f"{MODEL} {METHOD}, {IMAGES} images x {STEPS} steps; {args.seconds:g} s per figure", flush=True)
    whole_call = in_process_explainer(version_dir, images, IMAGES)
    chunked_call = in_process_explainer(version_dir, images, chunk)

    with (
        serving(args.model_repository, args.server_arg) as server,
        Client(server.target, timeout=120) as client,
    ):
        medians = interleaved_medians(
            {
                "whole": whole_call,
                "chunked": chunked_call,
                "served": lambda: client.explain(MODEL, images=images, method=METHOD, steps=STEPS),
            },
            args.seconds,
        )
        whole, chunked, served = medians["whole"], medians["chunked"], medians["served"]
        alone = bench(server.target, MODEL, 1, 1, args.seconds)
        with ExplainTraffic(server.target, images) as traffic:
            time.sleep(1.0)  # the first explain execution under way before Classify is measured
            beside = bench(server.target, MODEL, 1, 1, args.seconds)
    if traffic.errors:
        raise SystemExit(f"explain traffic failed: {traffic.errors[0]}")

    executions = -(-IMAGES // chunk)
    execution_ms = served / executions
    print(f"\n{'figure':<62} {'value':>12}")
    rows = [
        ("in-process, one call of 32 images (ms)", f"{whole:.1f}"),
        (f"in-process, {executions} calls of {chunk} images as the server cuts it (ms)", f"{chunked:.1f}"),
        ("served over gRPC, one request in flight (ms per request)", f"{served:.1f}"),
        (f"served / in-process one-call throughput (floor {FLOOR})", f"{whole / served:.2f}"),
        ("served / in-process chunked throughput", f"{chunked / served:.2f}"),
        (f"one bounded explain execution, served ({chunk} images, ms)", f"{execution_ms:.1f}"),
        ("Classify batch-1 p50 alone / with explain (ms)", f"{alone['p50_ms']:.2f} / {beside['p50_ms']:.2f}"),
        ("Classify batch-1 p99 alone / with explain (ms)", f"{alone['p99_ms']:.2f} / {beside['p99_ms']:.2f}"),
        ("Classify p50 ratio, p99 ratio (with explain / alone)",
         f"{beside['p50_ms'] / alone['p50_ms']:.2f}, {beside['p99_ms'] / alone['p99_ms']:.2f}"),
        ("Classify p50 increase / one bounded explain execution",
         f"{(beside['p50_ms'] - alone['p50_ms']) / execution_ms:.2f}"),
        ("Classify p99 increase / one bounded explain execution",
         f"{(beside['p99_ms'] - alone['p99_ms']) / execution_ms:.2f}"),
        ("Classify req/s alone / with explain",
         f"{alone['requests_per_second']:.0f} / {beside['requests_per_second']:.0f}"),
        ("explain requests/s beside Classify", f"{traffic.requests / traffic.seconds:.2f}"),
    ]  # fmt: skip
    for name, value in rows:
        print(f"{name:<62} {value:>12}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
