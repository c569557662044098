"""What a pause between calls costs a batch-1 model call on this machine, in-process, no server.

The c1 floor compares a served request with an in-process call made back to back. A served call at one
request in flight always follows a pause (the reply's trip to the client and the next request's trip
back), so this times each model's one-row call three ways: back to back, after 1 ms asleep (the CPU may
go idle, as it does between served requests) and after 1 ms spinning (busy, nothing else run). Asleep
minus spinning is what the idle CPU costs; spinning minus back to back is the cost of the gap itself.

    python server/benchmarks/idle_gap.py --model-repository models
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from serving_limits import configure_threads, newest_signature, server_threads

MODELS = ("mnist-softmax", "mnist-cnn")
GAP_SECONDS = 0.001
ONE_IMAGE = np.random.default_rng(0).integers(0, 256, size=(1, 28, 28), dtype=np.uint8)


def pause(kind: str) -> None:
    if kind == "asleep":
        time.sleep(GAP_SECONDS)
    elif kind == "spinning":
        until = time.perf_counter() + GAP_SECONDS
        while time.perf_counter() < until:
            pass


def median_ms(signature: Callable[[np.ndarray], object], kind: str, calls: int) -> float:
    durations = []
    for _ in range(calls):
        pause(kind)
        started = time.perf_counter()
        signature(ONE_IMAGE)
        durations.append(time.perf_counter() - started)
    return 1e3 * float(np.median(durations))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-repository", type=Path, required=True)
    parser.add_argument("--calls", type=int, default=300, help="calls per figure")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repeats of the three ways")
    args = parser.parse_args()
    intra, inter = server_threads()
    configure_threads(intra, inter)
    print(f"one-row calls, median ms, {intra} intra-op / {inter} inter-op threads (the server's)")
    print(f"{'model':<15} {'back to back':>14} {'after 1 ms asleep':>19} {'after 1 ms spinning':>21}")
    for name in MODELS:
        _, signature = newest_signature(args.model_repository, name)
        for _ in range(50):  # graph and kernels set up
            signature(ONE_IMAGE)
        figures: dict[str, list[float]] = {"back to back": [], "asleep": [], "spinning": []}
        for _ in range(args.rounds):
            for kind, values in figures.items():
                values.append(median_ms(signature, kind, args.calls))
        cells = [f"{min(values):.2f}-{max(values):.2f}" for values in figures.values()]
        print(f"{name:<15} {cells[0]:>14} {cells[1]:>19} {cells[2]:>21}")


if __name__ == "__main__":
    main()
