"""Explain's served cost against its in-process limit, and what explain traffic does to Classify latency.

1. In-process: mnist-cnn's ``explain_integrated_gradients`` signature (tf.saved_model.load, the server's
   thread settings) on 32 digits (`classify bench`'s generated ones) at 32 steps, one call, ms per call.
2. Served: the same request to a real classify-server over gRPC (Client.explain), one at a time, ms per
   request (the server runs it in --explain-slice-ms slices); served / in-process throughput is printed
   beside its floor (0.8). The in-process calls run in this process while the server is up, taking
   turns with the served ones call by call.
3. Classify batch-1 latency (p50, p99) and throughput on mnist-cnn at one request in flight, measured by
   `classify bench` in its own process, alone and then while this process keeps one explain request in
   flight; the ratios, and each side's throughput beside the other as a share of its throughput alone
   (explain runs on its own thread beside Classify's executions: shares that add up to about 1 mean the
   two split the cores and neither waits for the other).

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


def in_process_explainer(version_dir: Path, images: np.ndarray) -> Callable[[], None]:
    """Explain ``images`` by calling the signature directly, all in one call."""
    import tensorflow as tf

    signature = tf.saved_model.load(str(version_dir)).signatures[f"explain_{METHOD}"]

    def explain_all() -> None:
        answer = signature(
            images=tf.constant(images), targets=tf.fill([len(images)], -1), steps=tf.constant(STEPS)
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
    configure_threads(*server_threads())
    print(f"{MODEL} {METHOD}, {IMAGES} images x {STEPS} steps; {args.seconds:g} s per figure", flush=True)
    whole_call = in_process_explainer(version_dir, images)

    with (
        serving(args.model_repository, args.server_arg) as server,
        Client(server.target, timeout=120) as client,
    ):
        medians = interleaved_medians(
            {
                "whole": whole_call,
                "served": lambda: client.explain(MODEL, images=images, method=METHOD, steps=STEPS),
            },
            args.seconds,
        )
        whole, served = medians["whole"], medians["served"]
        alone = bench(server.target, MODEL, 1, 1, args.seconds)
        with ExplainTraffic(server.target, images) as traffic:
            time.sleep(1.0)  # the first explain execution under way before Classify is measured
            beside = bench(server.target, MODEL, 1, 1, args.seconds)
    if traffic.errors:
        raise SystemExit(f"explain traffic failed: {traffic.errors[0]}")

    classify_share = beside["requests_per_second"] / alone["requests_per_second"]
    explain_beside = traffic.requests / traffic.seconds
    explain_share = explain_beside * served / 1e3  # served ms per request alone
    print(f"\n{'figure':<62} {'value':>12}")
    rows = [
        ("in-process, one call of 32 images (ms)", f"{whole:.1f}"),
        ("served over gRPC, one request in flight (ms per request)", f"{served:.1f}"),
        (f"served / in-process throughput (floor {FLOOR})", f"{whole / served:.2f}"),
        ("Classify batch-1 p50 alone / with explain (ms)", f"{alone['p50_ms']:.2f} / {beside['p50_ms']:.2f}"),
        ("Classify batch-1 p99 alone / with explain (ms)", f"{alone['p99_ms']:.2f} / {beside['p99_ms']:.2f}"),
        ("Classify p50 ratio, p99 ratio (with explain / alone)",
         f"{beside['p50_ms'] / alone['p50_ms']:.2f}, {beside['p99_ms'] / alone['p99_ms']:.2f}"),
        ("Classify req/s alone / with explain",
         f"{alone['requests_per_second']:.0f} / {beside['requests_per_second']:.0f}"),
        ("explain requests/s alone / beside Classify", f"{1e3 / served:.2f} / {explain_beside:.2f}"),
        ("shares of their alone throughput: Classify + explain",
         f"{classify_share:.2f} + {explain_share:.2f}"),
    ]  # fmt: skip
    for name, value in rows:
        print(f"{name:<62} {value:>12}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
