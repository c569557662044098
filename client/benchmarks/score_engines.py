"""`classify score` rows/s with the local engine and with `--engine ray`, on one server, in one run.

Both jobs score the same Parquet file of MNIST digits (784 uint8 values a row, built from the data
directory) into Parquet, against one `classify-server` on loopback started here. The Ray job runs on a
local Ray cluster started here once (its start-up is not counted; the job's own Ray Data start-up is).
It prints a table; it measures, never asserts (docs/performance.md).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray

from classify_client.formats import read_idx
from classify_server.launcher import running_server

BIN = Path(sys.executable).parent


def digits_parquet(data_dir: Path, rows: int, path: Path) -> Path:
    images = read_idx(data_dir / "mnist" / "train-images-idx3-ubyte.gz")[:rows]
    table = pa.table(
        {
            "id": np.arange(len(images)),
            "image": pa.array(list(images.reshape(len(images), -1)), pa.list_(pa.uint8())),
        }
    )
    pq.write_table(table, path)
    return path


def rows_per_second(command: list[str]) -> float:
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    found = re.search(r"([\d,]+) rows/s", result.stdout)
    if found is None:
        raise RuntimeError(f"no rows/s in the output of {' '.join(command)}:\n{result.stdout}{result.stderr}")
    return float(found.group(1).replace(",", ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-repository", type=Path, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--model", default="mnist-cnn")
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--in-flight", type=int, default=4, help="local: calls at once; ray: actors")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work, running_server(args.model_repository) as server:
        source = digits_parquet(args.data_dir, args.rows, Path(work) / "digits.parquet")
        common = [
            str(BIN / "classify"), "score", "--target", server.target, "--model", args.model,
            "--input", str(source), "--batch-size", str(args.batch_size), "--in-flight", str(args.in_flight),
        ]  # fmt: skip
        local = rows_per_second([*common, "--output", str(Path(work) / "local.parquet")])
        context = ray.init(include_dashboard=False, log_to_driver=False)
        try:
            address = context.address_info["address"]
            on_ray = rows_per_second(
                [*common, "--engine", "ray", "--ray-address", address, "--output", str(Path(work) / "ray")]
            )
        finally:
            ray.shutdown()
    shape = f"{args.model}, {args.rows} rows, batch {args.batch_size}, {args.in_flight} in flight"
    print(f"| engine | rows/s ({shape}) |")
    print("|---|---|")
    print(f"| local | {local:,.0f} |")
    print(f"| ray | {on_ray:,.0f} |")
    print(f"ray / local: {on_ray / local:.2f}")


if __name__ == "__main__":
    main()
