"""The explain signatures inside the exported SavedModels, called in-process as the server calls them:
exact votes, complete integrated gradients, the tokens of the exported vectorizer, and the re-export of a
version that lacks them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

from classify_client.formats import iter_jsonl, read_idx
from classify_train.explain_methods import signature_name

pytestmark = pytest.mark.slow


def load_signatures(version_dir: Path):
    import tensorflow as tf

    return tf.saved_model.load(str(version_dir)).signatures


@pytest.fixture(scope="module")
def digits(validation_files: Path) -> np.ndarray:
    return read_idx(validation_files / "validation-images-idx3-ubyte.gz")[:64]


@pytest.fixture(scope="module")
def reviews(validation_files: Path) -> list[str]:
    lines = iter_jsonl(validation_files / "imdb_validation.jsonl.gz")
    return [line.record["text"] for line, _ in zip(lines, range(8), strict=False) if line.record]


def explain(signatures, method: str, inputs: dict, rows: int, steps: int | None = None) -> dict:
    import tensorflow as tf

    arguments = {name: tf.constant(value) for name, value in inputs.items()}
    arguments["targets"] = tf.fill([rows], -1)
    if steps is not None:
        arguments["steps"] = tf.constant(steps)
    return {key: value.numpy() for key, value in signatures[signature_name(method)](**arguments).items()}


def test_every_quick_model_exports_its_methods(quick_repository: Path) -> None:
    for name in ("mnist-softmax", "mnist-mlp", "mnist-cnn", "imdb-lstm"):
        version = quick_repository / name / "1"
        document = json.loads((version / "model.json").read_text())
        signatures = set(load_signatures(version))
        assert set(document["explain"]["methods"].values()) <= signatures, (name, signatures)
    assert json.loads((quick_repository / "mnist-cnn" / "1" / "model.json").read_text())["explain"][
        "default_method"
    ] == ("integrated_gradients")


def test_softmax_votes_plus_bias_are_the_logit(quick_repository: Path, digits: np.ndarray) -> None:
    signatures = load_signatures(quick_repository / "mnist-softmax" / "1")
    answer = explain(signatures, "votes", {"images": digits}, len(digits))
    # The logit comes from the model's matmul, the votes from W[i, c] * x_i: equal to float32 rounding.
    total = answer["attributions"].reshape(len(digits), -1).sum(axis=1) + answer["baseline_logit"]
    np.testing.assert_allclose(total, answer["logit"], rtol=1e-5, atol=1e-5)
    served = signatures["serving_default"](images=digits)["probabilities"].numpy()
    np.testing.assert_array_equal(answer["targets"], served.argmax(axis=1))
    # A blank pixel casts no vote, an inked one votes with its weight: the map is zero off the strokes.
    assert np.all(answer["attributions"][digits == 0] == 0)
    assert np.count_nonzero(answer["attributions"]) > 0


def test_cnn_integrated_gradients_complete_within_5_percent_at_64_steps(
    quick_repository: Path, digits: np.ndarray
) -> None:
    signatures = load_signatures(quick_repository / "mnist-cnn" / "1")
    rows = digits[:16]
    answer = explain(signatures, "integrated_gradients", {"images": rows}, len(rows), steps=64)
    difference = answer["logit"] - answer["baseline_logit"]
    relative = np.abs(answer["completeness_gap"]) / np.abs(difference)
    assert relative.max() <= 0.05, relative
    assert answer["attributions"].shape == (16, 28, 28) and answer["attributions"].dtype == np.float32


def test_lstm_tokens_are_the_vectorizers_words(quick_repository: Path, reviews: list[str]) -> None:
    signatures = load_signatures(quick_repository / "imdb-lstm" / "1")
    answer = explain(signatures, "integrated_gradients", {"texts": reviews}, len(reviews), steps=32)
    tokens, scores = answer["tokens"], answer["attributions"]
    assert tokens.shape == scores.shape
    first = [token.decode() for token in tokens[0] if token]
    # Lowercased, punctuation gone, the first 80 words kept (the quick recipe's sequence length).
    assert first and all(word == word.lower() and word.isalnum() for word in first)
    assert len(first) == min(80, len(first))
    assert np.all(scores[tokens == b""] == 0)  # padding is the baseline: it cannot score
    difference = answer["logit"] - answer["baseline_logit"]
    assert np.all(np.abs(answer["completeness_gap"]) <= 0.1 * np.abs(difference) + 1e-3)


def test_bidirectional_max_mean_lstm_explains_like_its_served_graph(tmp_path: Path) -> None:
    """The full recipe's layout (bidirectional, max and mean pooled, dropout), tiny and untrained."""
    import tensorflow as tf

    from classify_train.export import export_model
    from classify_train.models.imdb import ReviewEncoder, build_lstm, build_vectorizer
    from classify_train.training import TrainedModel

    texts = ["a great movie with fine acting", "terrible and boring", "i loved it", "bad"]
    encoder = ReviewEncoder(build_vectorizer(texts, 50), max_words=5, head_words=2)
    model = build_lstm(50, 5, 8, 4, bidirectional=True, pooling="max-mean", dropout=0.2)
    model(encoder(tf.constant(texts)))
    trained = TrainedModel(model, encoder, {}, {}, "", 0)
    version = export_model(
        trained, tmp_path, "imdb-lstm", lambda v: {"version": v}, texts, methods=["integrated_gradients"]
    )  # the export itself checks the explain probabilities against serving_default's
    answer = explain(load_signatures(version), "integrated_gradients", {"texts": texts}, 4, steps=64)
    # Head 2 + tail 3 words, as the encoder keeps them.
    assert [t.decode() for t in answer["tokens"][0]] == ["a", "great", "with", "fine", "acting"]
    difference = answer["logit"] - answer["baseline_logit"]
    assert np.all(np.abs(answer["completeness_gap"]) <= 0.05 * np.abs(difference) + 1e-4)


def test_export_signatures_adds_them_without_retraining(quick_repository: Path, tmp_path: Path) -> None:
    """A version written before the signatures existed gets them as the next version, same predictions."""
    import tensorflow as tf

    from classify_train.explain_reexport import rebuild
    from classify_train.export import write_saved_model
    from classify_train.recipes import get_recipe

    source = quick_repository / "mnist-softmax" / "1"
    old = tmp_path / "mnist-softmax" / "3"
    shutil.copytree(source, old)
    for entry in ("saved_model.pb", "variables", "assets", "fingerprint.pb"):
        path = old / entry
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    document = json.loads((source / "model.json").read_text())
    trained = rebuild(get_recipe("mnist-softmax"), document, tf.saved_model.load(str(source)))
    write_saved_model(trained, old, [])  # the serving signature only, as before this feature
    assert set(load_signatures(old)) == {"serving_default"}

    result = run_cli(
        "classify-train", "export-signatures", "--model-repository", tmp_path, "--name", "mnist-softmax"
    )
    new = tmp_path / "mnist-softmax" / "4"
    assert str(new) in result.stdout
    signatures = load_signatures(new)
    assert {"explain_votes", "explain_occlusion"} <= set(signatures)
    images = np.random.default_rng(1).integers(0, 256, (8, 28, 28), dtype=np.uint8)
    before = load_signatures(old)["serving_default"](images=images)["probabilities"].numpy()
    after = signatures["serving_default"](images=images)["probabilities"].numpy()
    np.testing.assert_allclose(after, before, atol=1e-6)
    written = json.loads((new / "model.json").read_text())
    assert written["version"] == 4 and written["reexported"]["from_version"] == 3
    assert (new / "report").is_dir()  # the version's other files came along


def test_export_signatures_names_a_missing_version(quick_repository: Path) -> None:
    result = run_cli(
        "classify-train", "export-signatures", "--model-repository", quick_repository,
        "--name", "mnist-cnn", "--version", "9", check=False,
    )  # fmt: skip
    assert result.returncode != 0 and "has no version 9" in result.stderr and "Traceback" not in result.stderr
