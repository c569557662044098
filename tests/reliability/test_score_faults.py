"""Faults around `classify score`: a server killed and restarted mid-job, a job killed and resumed, and
malformed input files. Real server processes, the real `classify` command, real MNIST and IMDb data."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from conftest import ServerProcess, copy_model, run_cli
from restart import score_killed_and_resumed, score_through_restart
from servers import Server

from classify_client import Client
from classify_client.formats import iter_jsonl, read_idx, write_idx


def labels_of(output: Path) -> list[str]:
    with output.open(newline="", encoding="utf-8") as stream:
        return [record["label"] for record in csv.DictReader(stream)]


def direct_labels(target: str, images: np.ndarray) -> list[str]:
    with Client(target, timeout=120) as client:
        return client.classify("mnist-cnn", images=images).labels


def test_score_job_survives_a_server_kill_and_restart_scoring_every_row_once(
    quick_repository: Path, tmp_path: Path, data_path: Path
) -> None:
    repository = tmp_path / "models"
    copy_model(quick_repository, "mnist-cnn", repository)  # one model: the restart is quicker
    server = Server(repository, tmp_path).start()
    try:
        server.wait_serving()
        source = data_path / "mnist" / "train-images-idx3-ubyte.gz"
        rows = 12_000
        result = score_through_restart(server, "mnist-cnn", source, rows, tmp_path / "out.csv")
        print(
            f"killed after {result.killed_after_rows} rows, server back in {result.restart_seconds:.1f} s, "
            f"job {result.job_seconds:.1f} s"
        )
        assert result.exit_code == 0, result.stderr
        assert server.starts == 2
        assert result.killed_after_rows < rows  # the kill really landed mid-job
        assert result.check.exactly_once(rows), result.check
        images = read_idx(source)[:rows]
        assert labels_of(tmp_path / "out.csv") == direct_labels(server.target, images)
    finally:
        server.stop()


def test_a_killed_score_job_resumes_without_rescoring_or_losing_rows(
    server: ServerProcess, tmp_path: Path, data_path: Path
) -> None:
    source = data_path / "mnist" / "train-images-idx3-ubyte.gz"
    rows = 20_000
    output = tmp_path / "out.csv"
    result = score_killed_and_resumed(server.target, "mnist-cnn", source, rows, output)
    print(f"killed after {result.killed_after_rows} rows, resumed from {result.resumed_from}")
    assert result.exit_code == 0, result.stderr
    assert 0 < result.resumed_from < rows
    assert result.resumed_from >= result.killed_after_rows  # nothing already written was scored again
    assert result.check.exactly_once(rows), result.check
    assert labels_of(output) == direct_labels(server.target, read_idx(source)[:rows])


def test_resume_cuts_a_torn_last_line_and_counts_the_kept_rows(
    server: ServerProcess, tmp_path: Path, data_path: Path
) -> None:
    images = tmp_path / "digits-idx3-ubyte"
    labels = tmp_path / "labels-idx1-ubyte"
    write_idx(images, read_idx(data_path / "mnist" / "train-images-idx3-ubyte.gz")[:300])
    write_idx(labels, read_idx(data_path / "mnist" / "train-labels-idx1-ubyte.gz")[:300])
    output = tmp_path / "out.jsonl"
    args = ("classify", "score", "--target", server.target, "--model", "mnist-cnn", "--input", images,
            "--labels", labels, "--output", output, "--summary-json", tmp_path / "s.json")  # fmt: skip
    run_cli(*args)
    complete = output.read_bytes()
    whole = json.loads((tmp_path / "s.json").read_text())
    lines = complete.split(b"\n")
    output.write_bytes(b"\n".join(lines[:100]) + b"\n" + lines[100][:17])  # 100 rows, then a torn one
    resumed = run_cli(*args, "--resume")
    assert "resuming after 100 rows" in resumed.stderr
    before = [json.loads(line) for line in complete.splitlines()]
    after = [json.loads(line) for line in output.read_bytes().splitlines()]
    assert after[:100] == before[:100]  # the kept rows are untouched
    # Rows 100+ ran in other batches than the first time: same labels, scores equal to float noise.
    assert [(r["index"], r["label"], r["true_label"]) for r in after] == [
        (r["index"], r["label"], r["true_label"]) for r in before
    ]
    assert max(abs(a["score"] - b["score"]) for a, b in zip(after, before, strict=True)) < 1e-3
    again = json.loads((tmp_path / "s.json").read_text())
    assert (again["n"], again["scored"], again["labelled"]) == (300, 300, 300)
    assert abs(again["accuracy"] - whole["accuracy"]) <= 2 / 300


def test_malformed_files_report_each_bad_row_by_position_and_score_the_rest(
    server: ServerProcess, tmp_path: Path, data_path: Path, validation_files: Path
) -> None:
    digits = read_idx(data_path / "mnist" / "train-images-idx3-ubyte.gz")[:50]

    # A truncated IDX file: the header promises 50 images, the bytes stop inside image 47.
    idx = tmp_path / "cut-idx3-ubyte"
    write_idx(idx, digits)
    idx.write_bytes(idx.read_bytes()[: 16 + 47 * 784 + 300])
    rows, stderr = score_rows(server, idx, "mnist-cnn", tmp_path / "idx.csv")
    assert len(rows) == 50
    assert [r["index"] for r in rows] == [str(i) for i in range(50)]
    assert all(r["label"] and not r["error"] for r in rows[:47])
    assert all("image missing" in r["error"] and not r["label"] for r in rows[47:])
    assert "row 47 (cut-idx3-ubyte#47): image missing: file truncated" in stderr

    # A folder of PNGs with a corrupt one and a zero-byte one among good ones.
    from PIL import Image

    folder = tmp_path / "pngs"
    folder.mkdir()
    for i in range(6):
        Image.fromarray(digits[i]).save(folder / f"{i:02d}.png")
    (folder / "02.png").write_bytes((folder / "02.png").read_bytes()[:40])
    (folder / "04.png").write_bytes(b"")
    rows, stderr = score_rows(server, folder, "mnist-cnn", tmp_path / "png.csv")
    assert [r["source"] for r in rows] == [f"{i:02d}.png" for i in range(6)]
    assert [bool(r["error"]) for r in rows] == [False, False, True, False, True, False]
    assert "row 2 (02.png): cannot read image" in stderr and "row 4 (04.png)" in stderr

    # JSON lines with a broken line, a bad byte, a non-object and an empty text among real reviews.
    reviews = [line.record for line in iter_jsonl(validation_files / "imdb_validation.jsonl.gz")][:4]
    lines = [json.dumps(reviews[0]).encode(), b'{"text": "cut', b'{"text": "caf\xe9"}',
             json.dumps(reviews[1]).encode(), b"[1]", b'{"text": ""}', json.dumps(reviews[2]).encode()]  # fmt: skip
    jsonl = tmp_path / "reviews.jsonl"
    jsonl.write_bytes(b"\n".join(lines) + b"\n")
    rows, stderr = score_rows(server, jsonl, "imdb-lstm", tmp_path / "text.csv")
    assert [r["source"] for r in rows] == [f"reviews.jsonl:{n}" for n in range(1, 8)]
    assert [bool(r["error"]) for r in rows] == [False, True, True, False, True, True, False]
    for position in (2, 3, 5, 6):
        assert f"(reviews.jsonl:{position})" in stderr


def score_rows(server: ServerProcess, source: Path, model: str, output: Path) -> tuple[list[dict], str]:
    """Score a file whose bad rows make the job exit 1; the rows written and what stderr said."""
    result = run_cli("classify", "score", "--target", server.target, "--model", model, "--input", source,
                     "--output", output, check=False)  # fmt: skip
    assert result.returncode == 1, result.stderr  # 1: some rows failed, the rest were scored
    with output.open(newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream)), result.stderr
