"""The `classify` CLI and the client library against the real server serving quick models."""

from __future__ import annotations

import asyncio
import csv
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import MODEL_NAMES, ServerProcess, run_cli
from PIL import Image

from classify_client import AsyncClient, Client, InvalidInputError, ModelNotFoundError
from classify_client.formats import iter_jsonl, read_idx


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as stream:
        return list(csv.DictReader(stream))


def read_summary(path: Path) -> dict:
    return json.loads(path.read_text())


def score(server: ServerProcess, *args: str | Path, check: bool = True):
    return run_cli("classify", "score", "--target", server.target, *args, check=check, timeout=300)


@pytest.mark.parametrize("model", ["mnist-softmax", "mnist-mlp", "mnist-cnn"])
def test_score_idx_with_labels_reports_accuracy_well_above_chance(
    server: ServerProcess, validation_files: Path, tmp_path: Path, model: str
) -> None:
    output, summary = tmp_path / "out.csv", tmp_path / "summary.json"
    result = score(
        server, "--model", model,
        "--input", validation_files / "validation-images-idx3-ubyte.gz",
        "--labels", validation_files / "validation-labels-idx1-ubyte.gz",
        "--output", output, "--summary-json", summary,
    )  # fmt: skip
    labels = read_idx(validation_files / "validation-labels-idx1-ubyte.gz")
    rows = read_csv(output)
    assert [int(r["index"]) for r in rows] == list(range(len(labels)))
    assert [int(r["true_label"]) for r in rows] == labels.tolist()
    assert all(r["error"] == "" for r in rows)
    facts = read_summary(summary)
    assert facts["n"] == len(labels) == facts["scored"]
    assert facts["failed"] == 0
    assert facts["accuracy"] > 0.8
    assert facts["accuracy"] == pytest.approx(np.mean([r["correct"] == "true" for r in rows]), abs=1e-9)
    assert facts["per_second"] > 0
    assert "accuracy" in result.stdout.lower()


def test_score_imdb_jsonl_reports_accuracy_well_above_chance(
    server: ServerProcess, validation_files: Path, tmp_path: Path
) -> None:
    output, summary = tmp_path / "out.jsonl", tmp_path / "summary.json"
    score(
        server, "--model", "imdb-lstm", "--input", validation_files / "imdb_validation.jsonl.gz",
        "--output", output, "--summary-json", summary,
    )  # fmt: skip
    expected = [line.record["label"] for line in iter_jsonl(validation_files / "imdb_validation.jsonl.gz")]
    rows = [line.record for line in iter_jsonl(output)]
    assert len(rows) == len(expected)
    assert [r["label"] for r in rows] == [r["label"] for r in rows if r["label"] in ("negative", "positive")]
    facts = read_summary(summary)
    assert facts["scored"] == len(expected)
    assert facts["accuracy"] > 0.6


def test_score_npy_and_png_folder_agree_with_idx(
    server: ServerProcess, validation_files: Path, tmp_path: Path
) -> None:
    images = read_idx(validation_files / "validation-images-idx3-ubyte.gz")[:30]
    np.save(tmp_path / "digits.npy", images)
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"digit-{i:03d}.png")
    (folder / "digit-015.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")  # replaces one digit with junk
    score(
        server, "--model", "mnist-cnn", "--input", tmp_path / "digits.npy", "--output", tmp_path / "npy.csv"
    )
    png = score(
        server, "--model", "mnist-cnn", "--input", folder, "--output", tmp_path / "png.csv", check=False
    )
    assert png.returncode == 1, png.stderr  # one row failed, the rest were scored
    assert "digit-015.png" in png.stderr
    from_npy, from_png = read_csv(tmp_path / "npy.csv"), read_csv(tmp_path / "png.csv")
    assert len(from_png) == len(from_npy) == 30
    for i, (a, b) in enumerate(zip(from_npy, from_png, strict=True)):
        if i == 15:
            assert b["error"] and not b["label"]
        else:
            assert (a["label"], a["score"]) == (b["label"], b["score"])


def test_score_plain_text_lines(server: ServerProcess, tmp_path: Path) -> None:
    reviews = tmp_path / "reviews.txt"
    reviews.write_text(
        "An absolute masterpiece, moving and beautifully acted.\n\n"
        "Dull, predictable and far too long. I want my money back.\n"
    )
    score(
        server, "--model", "imdb-lstm", "--input", reviews, "--output", tmp_path / "out.jsonl", "--top-k", "2"
    )
    rows = [line.record for line in iter_jsonl(tmp_path / "out.jsonl")]
    assert len(rows) == 2
    assert all(len(r["top_k"]) == 2 for r in rows)


def test_score_unknown_model_is_a_clear_whole_job_error(
    server: ServerProcess, validation_files: Path, tmp_path: Path
) -> None:
    result = score(
        server, "--model", "no-such-model", "--input", validation_files / "validation-images-idx3-ubyte.gz",
        "--output", tmp_path / "out.csv", check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "no-such-model" in result.stderr
    assert "Traceback" not in result.stderr


def test_models_and_health_commands(server: ServerProcess) -> None:
    listed = run_cli("classify", "models", "--target", server.target).stdout
    assert all(name in listed for name in MODEL_NAMES)
    assert run_cli("classify", "health", "--target", server.target, "--model", "imdb-lstm").returncode == 0
    unknown = run_cli("classify", "health", "--target", server.target, "--model", "nope", check=False)
    assert unknown.returncode == 1


def test_library_splits_large_inputs_transparently(server: ServerProcess, validation_files: Path) -> None:
    images = read_idx(validation_files / "validation-images-idx3-ubyte.gz")
    with Client(server.target, chunk_rows=128) as chunked, Client(server.target, chunk_rows=4096) as whole:
        split = chunked.classify("mnist-mlp", images=images, top_k=2, return_probabilities=True)
        single = whole.classify("mnist-mlp", images=images, top_k=2, return_probabilities=True)
        assert split.model == "mnist-mlp"
        assert split.version == 1
        assert split.labels == single.labels
        np.testing.assert_allclose(split.probabilities, single.probabilities, atol=1e-6)
        assert split.probabilities.shape == (len(images), 10)
        with pytest.raises(ModelNotFoundError, match="not found"):
            chunked.classify("nope", images=images[:1])
        with pytest.raises(InvalidInputError, match="classifies texts"):
            chunked.classify("imdb-lstm", images=images[:1])
        meta = chunked.metadata("imdb-lstm")
        assert meta.labels == ("negative", "positive") or list(meta.labels) == ["negative", "positive"]
        assert {m.name for m in chunked.models()} == set(MODEL_NAMES)
        assert chunked.health() == "SERVING"


def test_async_client_runs_many_calls_concurrently(server: ServerProcess, validation_files: Path) -> None:
    texts = [line.record["text"] for line in iter_jsonl(validation_files / "imdb_validation.jsonl.gz")][:40]

    async def scenario() -> list:
        client = AsyncClient(server.target, headers={"x-request-id": "async-test"})
        try:
            return await asyncio.gather(*(client.classify("imdb-lstm", texts=[t]) for t in texts))
        finally:
            await client.close()

    results = asyncio.run(scenario())
    with Client(server.target) as client:
        together = client.classify("imdb-lstm", texts=texts)
    assert [r.labels[0] for r in results] == together.labels


def test_bench_closed_loop_sweep_reports_client_and_server_figures(server: ServerProcess) -> None:
    result = run_cli(
        "classify", "bench", "--target", server.target, "--model", "mnist-softmax",
        "--concurrency", "1,8", "--requests", "200", "--warmup", "0", "--batch-size", "4", "--json",
    )  # fmt: skip
    report = json.loads(result.stdout)
    assert [step["concurrency"] for step in report["steps"]] == [1, 8]
    for step in report["steps"]:
        assert step["requests"] == 200
        assert step["errors"] == 0
        assert step["rows_per_second"] == pytest.approx(4 * step["requests_per_second"])
        assert 0 < step["p50_ms"] <= step["p90_ms"] <= step["p99_ms"] <= step["max_ms"]
        assert step["server"]["requests"] == 200
        assert step["server"]["rows"] == 800
        assert 1 <= step["server"]["executions"] <= 200
        assert 0 < step["client_cpu_us_per_request"] < 1e6 * step["seconds"] / step["requests"] * 2
    sequential = report["steps"][0]
    assert sequential["server"]["average_batch"] == pytest.approx(4.0)  # one request at a time: no merging


def test_bench_open_loop_on_real_text_and_table_output(server: ServerProcess, validation_files: Path) -> None:
    result = run_cli(
        "classify", "bench", "--target", server.target, "--model", "imdb-lstm",
        "--input", validation_files / "imdb_validation.jsonl.gz",
        "--rate", "50", "--duration", "1", "--concurrency", "32", "--warmup", "0",
    )  # fmt: skip
    assert "imdb-lstm" in result.stdout
    assert "req/s" in result.stdout
    unknown = run_cli("classify", "bench", "--target", server.target, "--model", "nope", check=False)
    assert unknown.returncode == 2
    assert "not found" in unknown.stderr


def test_bench_speaks_kserve_v2_to_the_same_batcher(server: ServerProcess) -> None:
    result = run_cli(
        "classify", "bench", "--target", server.target, "--model", "mnist-cnn", "--protocol", "v2",
        "--concurrency", "4", "--requests", "100", "--warmup", "0", "--json",
    )  # fmt: skip
    (step,) = json.loads(result.stdout)["steps"]
    assert step["requests"] == 100
    assert step["errors"] == 0
    assert step["server"]["requests"] == 100  # counted by the native statistics: one batcher behind both
