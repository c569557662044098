"""Training runs beyond the export contract: resume after an interruption, repeatable seeds, TensorBoard
logs, the report beside each version, and `classify-train evaluate` on every standard format. All on
quick or tiny models so the file runs in well under a minute."""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from classify_train.cli import main
from classify_train.data.datadir import DATA_DIR_ENV
from classify_train.recipes import RECIPES

REPO_ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data_dir() -> Path:
    return Path(os.environ.get(DATA_DIR_ENV) or REPO_ROOT.parent / "shared" / "data")


def _cli(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, (result.output, result.exc_info)
    return result.output


class _Interrupt(Exception):
    pass


@pytest.fixture(scope="module")
def resumed_softmax(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> tuple[Path, list[str]]:
    """Quick softmax for two epochs, interrupted after the first, then run again: it must resume."""
    from classify_train import training
    from classify_train.pipeline import CHECKPOINTS_DIR, train_and_export

    repo = tmp_path_factory.mktemp("repo")
    original = training.HistoryLog.on_epoch_end

    def interrupting(self: training.HistoryLog, epoch: int, logs: dict | None = None) -> None:
        original(self, epoch, logs)
        raise _Interrupt  # after epoch 1's checkpoint (BackupAndRestore runs first) and history

    training.HistoryLog.on_epoch_end = interrupting  # type: ignore[method-assign]
    try:
        with pytest.raises(_Interrupt):
            train_and_export(
                "mnist-softmax", data_dir, repo, quick=True, epochs=2, seed=7, echo=lambda _: None
            )
    finally:
        training.HistoryLog.on_epoch_end = original  # type: ignore[method-assign]
    assert len(list((repo / CHECKPOINTS_DIR).iterdir())) == 1
    assert not (repo / "mnist-softmax" / "1").exists()

    lines: list[str] = []
    result = train_and_export(
        "mnist-softmax", data_dir, repo, quick=True, epochs=2, seed=7, echo=lines.append
    )
    assert result.version_dir == repo / "mnist-softmax" / "1"
    return repo, lines


def test_interrupted_run_resumes_from_its_checkpoint(resumed_softmax: tuple[Path, list[str]]) -> None:
    repo, lines = resumed_softmax
    assert lines[0] == "mnist-softmax: resuming from the checkpoint after epoch 1/2"
    epoch_lines = [line for line in lines if " epoch " in line and "val_accuracy" in line]
    assert len(epoch_lines) == 1  # only epoch 2 ran
    assert lines[-1].startswith("mnist-softmax epoch 2/2  loss ") and "val_accuracy" in lines[-1]
    version_dir = repo / "mnist-softmax" / "1"
    document = json.loads((version_dir / "model.json").read_text(encoding="utf-8"))
    assert document["training"]["resumed_at_epoch"] == 1 and document["training"]["epochs"] == 2
    history = json.loads((version_dir / "history.json").read_text(encoding="utf-8"))
    assert [entry["epoch"] for entry in history] == [1, 2]  # the curves cover both runs
    assert document["metrics"]["validation_accuracy"] == round(history[-1]["val_accuracy"], 6)
    assert not (repo / ".checkpoints").exists()  # cleaned up once exported


def test_version_has_tensorboard_logs_and_a_report(resumed_softmax: tuple[Path, list[str]]) -> None:
    version_dir = resumed_softmax[0] / "mnist-softmax" / "1"
    for split in ("train", "validation"):
        assert list((version_dir / "tensorboard" / split).glob("events.out.tfevents.*"))
    report = version_dir / "report"
    for name in ("learning_curves.png", "confusion_matrix.png", "misclassified.png", "weights.png"):
        assert (report / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert f"]({name})" in (report / "README.md").read_text(encoding="utf-8")


def test_tensorboard_events_hold_the_epoch_scalars(resumed_softmax: tuple[Path, list[str]]) -> None:
    import tensorflow as tf

    events = sorted((resumed_softmax[0] / "mnist-softmax" / "1" / "tensorboard" / "validation").glob("*"))
    tags = {
        (value.tag, event.step)
        for path in events
        for event in tf.compat.v1.train.summary_iterator(str(path))
        for value in event.summary.value
    }
    assert {("accuracy", 1), ("accuracy", 2), ("loss", 2)} <= tags


def test_same_seed_same_model(data_dir: Path, tmp_path: Path) -> None:
    from classify_train.data.split import carve_validation
    from classify_train.datasets import load_dataset
    from classify_train.training import train

    dataset = load_dataset("mnist", data_dir)
    split = carve_validation(dataset.labels)
    recipe = RECIPES["mnist-softmax"]
    runs = [
        train(recipe, dataset, split, quick=True, epochs=1, seed=5, echo=lambda _: None) for _ in range(2)
    ]
    first, second = (np.asarray(run.model.layers[-1].get_weights()[0]) for run in runs)
    np.testing.assert_array_equal(first, second)
    assert runs[0].metrics == runs[1].metrics


def test_augmentation_keeps_dtype_and_shape_and_is_identity_when_off() -> None:
    import tensorflow as tf

    from classify_train.training import image_augmenter

    images = np.zeros((4, 28, 28), np.uint8)
    images[:, 10:18, 12:16] = 255
    assert np.array_equal(image_augmenter({}, 1)(tf.constant(images)).numpy(), images)
    moved = image_augmenter({"rotation": 10, "shift": 2, "zoom": 0.1}, 1)(tf.constant(images)).numpy()
    assert moved.dtype == np.uint8 and moved.shape == images.shape
    assert (
        not np.array_equal(moved, images) and abs(int(moved.sum()) - int(images.sum())) < images.sum() * 0.5
    )


def test_evaluate_reads_idx_files_folders_and_npz(
    resumed_softmax: tuple[Path, list[str]], tmp_path: Path, data_dir: Path
) -> None:
    repo = resumed_softmax[0]
    document = json.loads((repo / "mnist-softmax" / "1" / "model.json").read_text(encoding="utf-8"))
    _cli("split", "mnist", "--data-dir", str(data_dir), "--out", str(tmp_path / "held"), "--seed", "7")
    output = _cli(
        "evaluate", "--model-repository", str(repo), "--name", "mnist-softmax",
        "--data", str(tmp_path / "held" / "validation-images-idx3-ubyte.gz"), "--report", str(tmp_path / "r"),
    )  # fmt: skip
    # The SavedModel on the full validation split gives exactly what training measured.
    assert f"rows 6000  accuracy {document['metrics']['validation_accuracy']:.4f}" in output
    assert "exactly the model's validation split" in output
    assert "confusion matrix" in output and len(output.splitlines()) >= 14
    assert (tmp_path / "r" / "confusion_matrix.png").is_file() and (tmp_path / "r" / "README.md").is_file()

    # The standard test file names (here holding the first 500 validation rows), plain and gzipped.
    from classify_client.formats import read_idx, write_idx

    images = read_idx(tmp_path / "held" / "validation-images-idx3-ubyte.gz")[:500]
    labels = read_idx(tmp_path / "held" / "validation-labels-idx1-ubyte.gz")[:500]
    folder = tmp_path / "t10k"
    folder.mkdir()
    write_idx(folder / "t10k-images-idx3-ubyte", images)
    write_idx(folder / "t10k-labels-idx1-ubyte", labels)
    np.savez(tmp_path / "mnist.npz", x_test=images, y_test=labels)
    answers = [
        _cli("evaluate", "--model-repository", str(repo), "--name", "mnist-softmax", "--data", str(path))
        for path in (folder, folder / "t10k-images-idx3-ubyte", tmp_path / "mnist.npz")
    ]
    assert all("rows 500  accuracy" in answer for answer in answers)
    assert len({answer.splitlines()[1].split("(")[0] for answer in answers}) == 1


def test_evaluate_errors_are_one_line_messages(
    resumed_softmax: tuple[Path, list[str]], tmp_path: Path
) -> None:
    repo = resumed_softmax[0]
    result = CliRunner().invoke(
        main, ["evaluate", "--model-repository", str(repo), "--name", "mnist-cnn", "--data", str(tmp_path)]
    )
    assert result.exit_code == 1 and "no versions of 'mnist-cnn'" in result.output
    result = CliRunner().invoke(
        main,
        ["evaluate", "--model-repository", str(repo), "--name", "mnist-softmax", "--data", str(tmp_path)],
    )
    assert result.exit_code == 1 and "t10k-images-idx3-ubyte" in result.output


@pytest.fixture(scope="module")
def tiny_text_export(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> tuple[Path, list[dict]]:
    """The full imdb-lstm recipe's code path (unlabelled vocabulary, word2vec pre-training,
    bidirectional LSTM with max/mean pooling), shrunk to a few hundred reviews and tiny widths."""
    from classify_train import recipes
    from classify_train.pipeline import train_and_export

    root = tmp_path_factory.mktemp("tiny")
    (root / "imdb").mkdir()
    with gzip.open(data_dir / "imdb" / "imdb_train.jsonl.gz", "rt", encoding="utf-8") as stream:
        reviews = [json.loads(line) for line in stream]
    chosen = [{"text": r["text"], "label": r["label"]} for r in reviews[:150] + reviews[-150:]]
    with gzip.open(root / "imdb" / "imdb_train.jsonl.gz", "wt", encoding="utf-8") as stream:
        stream.writelines(json.dumps(row) + "\n" for row in chosen)
    with gzip.open(root / "imdb" / "imdb_unsup.jsonl.gz", "wt", encoding="utf-8") as stream:
        stream.writelines(json.dumps({"text": r["text"], "label": -1}) + "\n" for r in reviews[150:250])

    full = RECIPES["imdb-lstm"].full
    small = {
        "vocabulary_size": 800,
        "sequence_length": 40,
        "head_words": 10,
        "embedding_dim": 8,
        "lstm_units": 4,
    }
    tiny = dataclasses.replace(
        full,
        epochs=1,
        batch_size=64,
        pretrain_embedding_epochs=1,
        # Two classes: the top probability is always at least 0.5, so the teacher labels every review.
        pseudo_label_confidence=0.5,
        model_options={**full.model_options, **small},
    )
    patched = dataclasses.replace(RECIPES["imdb-lstm"], full=tiny)
    original = recipes.RECIPES["imdb-lstm"]
    recipes.RECIPES["imdb-lstm"] = patched
    try:
        repo = root / "repo"
        lines: list[str] = []
        train_and_export("imdb-lstm", root, repo, quick=False, epochs=None, seed=3, echo=lines.append)
    finally:
        recipes.RECIPES["imdb-lstm"] = original
    assert any(line.startswith("pre-trained embeddings: ") for line in lines)
    assert any("the teacher labelled 100 of 100 unlabelled reviews" in line for line in lines), lines
    return repo, chosen


def test_text_model_records_its_recipe_and_reports_snippets(
    tiny_text_export: tuple[Path, list[dict]],
) -> None:
    version_dir = tiny_text_export[0] / "imdb-lstm" / "1"
    document = json.loads((version_dir / "model.json").read_text(encoding="utf-8"))
    assert "Bidirectional(LSTM(4))" in document["architecture"] and "MaskedMax" in document["architecture"]
    assert document["training"]["pretrain_embedding_epochs"] == 1
    assert document["training"]["vocabulary_from_unlabelled"] is True
    assert set(document["data"]["source_files"]) == {"imdb_train.jsonl.gz", "imdb_unsup.jsonl.gz"}
    self_training = document["training"]["self_training"]
    assert self_training["considered"] == 100 and self_training["kept"] == 100, self_training
    assert 0 <= self_training["teacher_validation_accuracy"] <= 1
    assert (version_dir / "tensorboard" / "teacher").is_dir() and (
        version_dir / "tensorboard" / "train"
    ).is_dir()
    summary = (version_dir / "report" / "README.md").read_text(encoding="utf-8")
    assert "## Most confident mistakes, as text" in summary and "](misclassified.png)" in summary
    assert not (version_dir / "report" / "weights.png").exists()


def test_report_shows_windows_punctuation_as_typed(tmp_path: Path) -> None:
    # IMDb has reviews with cp1252 punctuation read as Latin-1 control characters: no font draws them.
    from classify_train.report import plot_worst_texts, snippet

    assert snippet("great \x96 really\x85 <br />fun\x81") == "great \u2013 really\u2026 fun"
    texts = ["a film \x96 dull\x85 and long", "loved it \x93all\x94"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns of each glyph it cannot draw
        path = plot_worst_texts(
            texts,
            np.array([1, 0]),
            np.array([[0.9, 0.1], [0.2, 0.8]]),
            ["negative", "positive"],
            tmp_path / "misclassified.png",
            title="imdb",
        )
    assert path.stat().st_size > 0


def test_evaluate_reads_jsonl_and_aclimdb_folders(
    tiny_text_export: tuple[Path, list[dict]], tmp_path: Path
) -> None:
    repo, rows = tiny_text_export
    sample = rows[:20] + rows[-20:]
    with gzip.open(tmp_path / "imdb_test.jsonl.gz", "wt", encoding="utf-8") as stream:
        stream.writelines(json.dumps(row) + "\n" for row in sample)
    for index, row in enumerate(sample):
        folder = tmp_path / "aclImdb" / "test" / ("pos" if row["label"] else "neg")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{index}_{8 if row['label'] else 2}.txt").write_text(row["text"], encoding="utf-8")
    answers = [
        _cli("evaluate", "--model-repository", str(repo), "--name", "imdb-lstm", "--data", str(path))
        for path in (tmp_path / "imdb_test.jsonl.gz", tmp_path / "aclImdb", tmp_path / "aclImdb" / "test")
    ]
    assert all("rows 40  accuracy" in answer and "negative" in answer for answer in answers)
    # Same reviews, same scores, whichever format they came in.
    assert len({answer.splitlines()[1].split("(")[0] for answer in answers}) == 1


def test_format_duration() -> None:
    from classify_train.progress import format_duration

    assert [format_duration(s) for s in (4.4, 75, 3725)] == ["4 s", "1 min 15 s", "1 h 02 min"]
