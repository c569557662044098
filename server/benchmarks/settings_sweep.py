"""Served figures of the performance floors under several server configurations, in one run.

Each configuration (a string of classify-server flags; "" is the defaults) gets its own server on
loopback, then the six served figures of `serving_limits.py` for a few seconds each. Compare configurations
within one run, as ratios: this is how the batching and thread defaults were chosen (docs/performance.md).

    python server/benchmarks/settings_sweep.py --model-repository models --seconds 5 \\
        --config "" --config "--max-batches-in-flight 2" --config "--inline-max-rows 0"
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from serving_limits import bench, resident_mb, serving

# (model, rows per request, requests in flight): the served side of each floor.
CASES = (
    ("mnist-softmax", 128, 4),
    ("mnist-mlp", 128, 4),
    ("mnist-cnn", 128, 4),
    ("mnist-cnn", 1, 64),
    ("imdb-lstm", 1, 64),
    ("mnist-cnn", 1, 1),
)


def sweep(repository: Path, configuration: str, seconds: float) -> None:
    with serving(repository, shlex.split(configuration)) as server:
        assert server.ready_seconds is not None
        target, startup = server.target, server.ready_seconds
        memory = resident_mb(server.pid)
        print(f"== [{configuration or 'defaults'}] start-up {startup:.1f} s, {memory:,.0f} MB")
        for model, rows, concurrency in CASES:
            step = bench(target, model, rows, concurrency, seconds)
            print(
                f"   {model:<14} {rows:>3} rows x {concurrency:>2}: {step['rows_per_second']:>9,.0f} rows/s, "
                f"p50 {step['p50_ms']:7.2f} ms, average batch {step['server'].get('average_batch', 0):5.1f}, "
                f"tool CPU {step.get('client_cpu_us_per_request') or 0:5.0f} µs/request",
                flush=True,
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-repository", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=5.0, help="measurement time per figure")
    parser.add_argument(
        "--config", action="append", default=None, help='classify-server flags, e.g. "--inline-max-rows 0"'
    )
    args = parser.parse_args()
    for configuration in args.config or [""]:
        sweep(args.model_repository, configuration, args.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
