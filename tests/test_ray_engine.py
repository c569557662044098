"""Ray Data batch scoring against a real classify-server: ClassifyPredictor in map_batches and
`classify score --engine ray`, on a local Ray cluster of 2 CPUs; their rows equal the local engine's,
and a server killed and restarted mid-job loses no row."""

from __future__ import annotations

import csv
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as arrow_dataset
import pyarrow.parquet as pq
import pytest
import ray
from conftest import ServerProcess, copy_model, run_cli

from classify_client.formats import iter_jsonl, read_idx
from classify_client.ray import ClassifyPredictor
from classify_client.retry import RetryPolicy

ROWS = 300


def start_local_ray(attempts: int = 3) -> ray.client_builder.BaseContext:
    """ray.init, tried again when its node does not register in time: Ray waits a fixed 30 s for its
    raylet, which a CI machine busy with the tests before this one can exceed (2026-12-04)."""
    for attempt in range(1, attempts + 1):
        try:
            return ray.init(
                num_cpus=2,
                object_store_memory=128 * 1024 * 1024,
                include_dashboard=False,
                log_to_driver=False,
            )
        except Exception as error:  # Ray raises a bare Exception for the startup timeout
            ray.shutdown()
            if attempt == attempts or "timed out during startup" not in str(error):
                raise
    raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[str]:
    """A local Ray cluster kept small (2 CPUs, 128 MB of object store, no dashboard); its address."""
    context = start_local_ray()
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        yield context.address_info["address"]
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def digits_parquet(validation_files: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Validation digits as Parquet: an id, 784 uint8 values per image and the true label."""
    images = read_idx(validation_files / "validation-images-idx3-ubyte.gz")[:ROWS]
    labels = read_idx(validation_files / "validation-labels-idx1-ubyte.gz")[:ROWS]
    table = pa.table(
        {
            "id": np.arange(ROWS, dtype=np.int64),
            "image": pa.array(list(images.reshape(ROWS, -1)), type=pa.list_(pa.uint8())),
            "label": labels.astype(np.int64),
        }
    )
    path = tmp_path_factory.mktemp("ray-digits") / "digits.parquet"
    pq.write_table(table, path, row_group_size=100)
    return path


def local_rows(
    server: ServerProcess, source: Path, model: str, id_column: str, output: Path, *extra: str
) -> list[dict]:
    run_cli(
        "classify", "score", "--target", server.target, "--model", model, "--input", source,
        "--output", output, "--id-column", id_column, *extra, timeout=300,
    )  # fmt: skip
    return pq.read_table(output).to_pylist()


def test_predictor_on_parquet_digits_gives_the_local_engines_rows(
    server: ServerProcess, ray_cluster: str, digits_parquet: Path, tmp_path: Path
) -> None:
    local = local_rows(server, digits_parquet, "mnist-cnn", "id", tmp_path / "local.parquet", "--top-k", "3")
    dataset = ray.data.read_parquet(str(digits_parquet))
    scored = dataset.map_batches(
        ClassifyPredictor,
        fn_constructor_kwargs={"target": server.target, "model": "mnist-cnn", "keep": ["id"], "top_k": 3},
        concurrency=2,
        batch_size=64,
        num_cpus=0.25,
    ).take_all()
    assert [row["id"] for row in scored] == [row["id"] for row in local] == list(range(ROWS))
    assert [row["label"] for row in scored] == [row["label"] for row in local]
    np.testing.assert_allclose([r["score"] for r in scored], [r["score"] for r in local], rtol=1e-5)
    assert all(row["error"] is None for row in scored)
    assert [list(row["top_k_labels"]) for row in scored] == [[c["label"] for c in r["top_k"]] for r in local]
    np.testing.assert_allclose(
        np.stack([row["top_k_scores"] for row in scored]),
        [[c["score"] for c in r["top_k"]] for r in local],
        rtol=1e-5,
    )
    accuracy = np.mean([row["correct"] for row in scored])
    assert accuracy == pytest.approx(np.mean([row["correct"] for row in local]))
    assert accuracy > 0.8


def test_cli_ray_engine_on_csv_reviews_gives_the_local_engines_rows(
    server: ServerProcess, ray_cluster: str, validation_files: Path, tmp_path: Path
) -> None:
    reviews = [line.record for line in iter_jsonl(validation_files / "imdb_validation.jsonl.gz")][:ROWS]
    source = tmp_path / "reviews.csv"
    with source.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(["review_id", "text", "label"])
        writer.writerows((f"r{i}", r["text"], r["label"]) for i, r in enumerate(reviews))
    local = local_rows(server, source, "imdb-lstm", "review_id", tmp_path / "local.parquet")
    result = run_cli(
        "classify", "score", "--target", server.target, "--model", "imdb-lstm", "--engine", "ray",
        "--ray-address", ray_cluster, "--input", source, "--output", tmp_path / "ray-out",
        "--id-column", "review_id", "--batch-size", "50", "--in-flight", "2", timeout=300,
    )  # fmt: skip
    scored = arrow_dataset.dataset(str(tmp_path / "ray-out"), format="parquet").to_table().to_pylist()
    # Ray writes several files; their names sort in block order, so the rows come back in input order.
    assert [row["review_id"] for row in scored] == [row["review_id"] for row in local]
    assert [row["label"] for row in scored] == [row["label"] for row in local]
    np.testing.assert_allclose([r["score"] for r in scored], [r["score"] for r in local], rtol=1e-5)
    assert f"n {ROWS}, scored {ROWS}, failed 0" in result.stdout
    assert "accuracy" in result.stdout


def test_cli_ray_engine_refuses_unreadable_inputs_clearly(server: ServerProcess, tmp_path: Path) -> None:
    (tmp_path / "notes.xml").write_text("<a/>")
    result = run_cli(
        "classify", "score", "--target", server.target, "--model", "mnist-cnn", "--engine", "ray",
        "--input", tmp_path / "*.xml", "--output", tmp_path / "out", check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "must all be Parquet (.parquet), CSV (.csv, .csv.gz) or PNG/JPEG" in result.stderr
    assert "Traceback" not in result.stderr


def classify_calls(server: ServerProcess) -> float:
    """OK Classify calls the server's current process answered (its /metrics; the last address logged)."""
    url = re.findall(r"metrics on (http://\S+/metrics)", server.log())[-1]
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    found = re.findall(r'^classify_requests_total\{[^}]*code="OK"[^}]*\} (\S+)', text, re.MULTILINE)
    return sum(float(value) for value in found)


def test_a_server_restart_mid_ray_job_loses_no_row(
    quick_repository: Path, private_server, ray_cluster: str, validation_files: Path, tmp_path: Path
) -> None:
    repository = tmp_path / "models"
    copy_model(quick_repository, "mnist-cnn", repository)  # one model: the restart is quicker
    restarted = private_server(repository)
    restarted.wait_serving()
    images = read_idx(validation_files / "validation-images-idx3-ubyte.gz")
    rows = 2 * len(images)  # small calls, many of them: the job is still running when the server dies
    dataset = ray.data.from_items([{"id": i, "image": images[i % len(images)]} for i in range(rows)])
    retry = RetryPolicy(max_attempts=100, max_backoff=1.0)
    scored_batches = dataset.map_batches(
        ClassifyPredictor,
        fn_constructor_kwargs={"target": restarted.target, "model": "mnist-cnn", "keep": ["id"],
                               "timeout": 120, "retry": retry},
        concurrency=1,
        batch_size=8,
        num_cpus=0.25,
    ).iter_batches(batch_size=8, prefetch_batches=1)  # fmt: skip
    stream = iter(scored_batches)
    received = [next(stream)]  # the job runs and the server has answered
    restarted.kill()  # SIGKILL: calls in flight fail, the predictor's retries carry them over
    restarted.start()
    restarted.wait_serving()
    received.extend(stream)
    ids = np.concatenate([batch["id"] for batch in received])
    # A column of None only comes back from Arrow as NaN floats: an error is a string.
    errors = [e for batch in received for e in batch["error"] if isinstance(e, str)]
    assert ids.tolist() == list(range(rows))  # every row once, in order
    assert errors == []
    assert classify_calls(restarted) > 0  # the restarted server answered part of the job
