"""The served explanations are faithful to the model (issue 17), checked against a real server with the
real client on held-out validation digits and reviews:

- completeness: the attributions add up to logit(x) - logit(baseline), and the gap the server reports
  is the one recomputed from the reply; the logits it reports are the served model's;
- deletion: removing the most-attributed pixels or tokens hurts the prediction more than removing as
  many random ones;
- model randomisation (Adebayo et al. 2018): the same architecture with random weights, exported by the
  training package and served by a second server, explains differently.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import ServerProcess
from scipy.stats import spearmanr

from classify_client import Client, ExplainResult
from classify_client.formats import iter_jsonl, read_idx

pytestmark = pytest.mark.slow

PIXELS = 28 * 28
DELETION_DIGITS = 200
DELETED_PIXELS = round(0.05 * PIXELS)  # 5% of the image: 39 pixels
REVIEWS = 60
DELETED_TOKENS = 3
RANDOMISED_DIGITS = 32
SEED = 17


@pytest.fixture(scope="module")
def client(server):
    with Client(server.target, timeout=180) as connected:
        yield connected


@pytest.fixture(scope="module")
def digits(validation_files: Path) -> np.ndarray:
    return read_idx(validation_files / "validation-images-idx3-ubyte.gz")[:DELETION_DIGITS]


@pytest.fixture(scope="module")
def reviews(validation_files: Path) -> list[str]:
    lines = iter_jsonl(validation_files / "imdb_validation.jsonl.gz")
    return [line.record["text"] for line, _ in zip(lines, range(REVIEWS), strict=False) if line.record]


@pytest.fixture(scope="module")
def cnn_gradients(client: Client, digits: np.ndarray) -> ExplainResult:
    """Integrated gradients (the default 32 steps) of every digit's top class: shared by two tests."""
    return client.explain("mnist-cnn", images=digits, method="integrated_gradients")


def target_probabilities(client: Client, model: str, targets: np.ndarray, **inputs) -> np.ndarray:
    """The served probability of each item's own target class."""
    answer = client.classify(model, return_probabilities=True, **inputs)
    assert answer.probabilities is not None
    return answer.probabilities[np.arange(len(targets)), targets]


def check_reported_gaps(result: ExplainResult) -> np.ndarray:
    """Recompute each gap from the reply's own map or scores and logits; returns the relative gaps."""
    relative = []
    for item in result.items:
        for attribution in item:
            values = attribution.map if attribution.map is not None else attribution.scores
            assert values is not None
            total = float(np.sum(values, dtype=np.float64))
            difference = float(attribution.logit) - float(attribution.baseline_logit)
            # The server sums in float32: allow its rounding, relative to the magnitudes summed.
            scale = float(np.abs(values).sum()) + abs(attribution.logit) + abs(attribution.baseline_logit)
            assert total - difference == pytest.approx(attribution.completeness_gap, abs=1e-5 * scale + 1e-6)
            relative.append(abs(total - difference) / abs(difference))
    return np.asarray(relative)


def check_logits_are_the_served_models(client: Client, model: str, images: np.ndarray, **options) -> None:
    """With all ten classes explained, logit_i - logit_j must be log p_i - log p_j of Classify's answer,
    and the baseline logits must be the logits of a black image: the reported logits are the model's."""
    everything = client.explain(model, images=images, top_k=10, **options)
    served = client.classify(model, images=images, return_probabilities=True).probabilities
    assert served is not None
    black = client.explain(model, images=np.zeros((1, 28, 28), np.uint8), top_k=10, **options)
    black_logits = {a.target_index: a.logit for a in black.items[0]}
    for item, probabilities in zip(everything.items, served, strict=True):
        assert sorted(a.target_index for a in item) == list(range(10))
        logits = np.array([a.logit for a in sorted(item, key=lambda a: a.target_index)], np.float64)
        # Classes far below the top have probabilities that float32 rounds badly: compare the likely ones.
        likely = probabilities > 1e-4
        log_ratios = np.log(probabilities[likely].astype(np.float64))
        np.testing.assert_allclose(logits[likely] - logits[likely][0], log_ratios - log_ratios[0], atol=2e-3)
        for attribution in item:
            assert attribution.baseline_logit == pytest.approx(
                black_logits[attribution.target_index], abs=1e-4
            )


def test_cnn_integrated_gradients_are_complete_at_64_steps(client: Client, digits: np.ndarray) -> None:
    result = client.explain("mnist-cnn", images=digits[:32], method="integrated_gradients", steps=64)
    assert (result.method, result.steps) == ("integrated_gradients", 64)
    relative = check_reported_gaps(result)
    print(f"\nmnist-cnn IG 64 steps: completeness gap mean {relative.mean():.4%}, max {relative.max():.4%}")
    assert relative.mean() <= 0.05
    assert relative.max() <= 0.20  # no single item far off either
    check_logits_are_the_served_models(
        client, "mnist-cnn", digits[:4], method="integrated_gradients", steps=1
    )


def test_softmax_votes_are_complete_to_float32_precision(client: Client, digits: np.ndarray) -> None:
    result = client.explain("mnist-softmax", images=digits[:16], top_k=10)
    assert result.method == "votes"
    relative = check_reported_gaps(result)
    for item in result.items:
        for attribution in item:
            assert attribution.map is not None
            scale = float(np.abs(attribution.map).sum()) + abs(attribution.logit)
            assert abs(attribution.completeness_gap) <= 1e-5 * scale + 1e-6
    largest = max(abs(a.completeness_gap) for item in result.items for a in item)
    print(f"\nmnist-softmax votes: |gap| max {largest:.2e}, relative max {relative.max():.2e}")
    assert relative.max() < 1e-4
    check_logits_are_the_served_models(client, "mnist-softmax", digits[:4], method="votes")


def test_deleting_the_most_attributed_pixels_hurts_more_than_random_ones(
    client: Client, digits: np.ndarray, cnn_gradients: ExplainResult
) -> None:
    targets = np.array([item[0].target_index for item in cnn_gradients.items])
    before = np.array([item[0].probability for item in cnn_gradients.items])
    np.testing.assert_allclose(
        target_probabilities(client, "mnist-cnn", targets, images=digits), before, atol=1e-5
    )
    rng = np.random.default_rng(SEED)
    most, random = digits.reshape(len(digits), -1).copy(), digits.reshape(len(digits), -1).copy()
    for row, attribution in enumerate(cnn_gradients.maps().reshape(len(digits), -1)):
        most[row, np.argsort(-attribution, kind="stable")[:DELETED_PIXELS]] = 0
        # Random pixels of the digit's own strokes: zeroing already black pixels would change nothing.
        inked = np.flatnonzero(digits[row].reshape(-1))
        random[row, rng.choice(inked, min(DELETED_PIXELS, len(inked)), replace=False)] = 0
    drop_most = before - target_probabilities(client, "mnist-cnn", targets, images=most.reshape(digits.shape))
    drop_random = before - target_probabilities(
        client, "mnist-cnn", targets, images=random.reshape(digits.shape)
    )
    print(f"\ndeletion of {DELETED_PIXELS} pixels: most-attributed drop {drop_most.mean():.3f}, "
          f"random inked drop {drop_random.mean():.3f}")  # fmt: skip
    assert drop_most.mean() > 0
    assert drop_most.mean() >= 2 * drop_random.mean()


def test_deleting_the_most_attributed_tokens_weakens_more_verdicts(
    client: Client, reviews: list[str]
) -> None:
    explained = client.explain("imdb-lstm", texts=reviews)
    assert explained.method == "integrated_gradients"
    rng = np.random.default_rng(SEED)
    kept: list[list[str]] = []
    without_most: list[str] = []
    without_random: list[str] = []
    for item in explained.items:
        tokens, scores = item[0].tokens, item[0].scores
        assert tokens is not None and scores is not None and len(tokens) > DELETED_TOKENS
        kept.append(tokens)
        most = set(np.argsort(-scores, kind="stable")[:DELETED_TOKENS].tolist())
        random = set(rng.choice(len(tokens), DELETED_TOKENS, replace=False).tolist())
        without_most.append(" ".join(t for i, t in enumerate(tokens) if i not in most))
        without_random.append(" ".join(t for i, t in enumerate(tokens) if i not in random))
    targets = np.array([item[0].target_index for item in explained.items])
    before = np.array([item[0].probability for item in explained.items])
    # The model's own tokens, joined again, are what it read: the same probabilities, so removing some
    # of them removes exactly those words.
    rejoined = target_probabilities(client, "imdb-lstm", targets, texts=[" ".join(t) for t in kept])
    np.testing.assert_allclose(rejoined, before, atol=1e-5)
    after_most = target_probabilities(client, "imdb-lstm", targets, texts=without_most)
    after_random = target_probabilities(client, "imdb-lstm", targets, texts=without_random)
    # Two classes: the verdict flips when the target falls below one half.
    flips_most, flips_random = int((after_most < 0.5).sum()), int((after_random < 0.5).sum())
    weaker_most, weaker_random = int((after_most < before).sum()), int((after_random < before).sum())
    print(f"\n{len(reviews)} reviews, {DELETED_TOKENS} tokens removed: most-attributed {flips_most} flips, "
          f"{weaker_most} weakened; random {flips_random} flips, {weaker_random} weakened")  # fmt: skip
    assert flips_most > flips_random
    assert weaker_most > weaker_random


@pytest.fixture(scope="module")
def random_cnn_repository(quick_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mnist-cnn's architecture with its initial random weights, exported as classify-train exports
    (the recipe's builder, then export_model with the same explain methods) into a repository of its own."""
    import keras

    from classify_train.explain_methods import methods_for
    from classify_train.export import export_model
    from classify_train.recipes import get_recipe
    from classify_train.training import TrainedModel, build_model

    recipe = get_recipe("mnist-cnn")
    document = json.loads((quick_repository / "mnist-cnn" / "1" / "model.json").read_text())
    keras.utils.set_random_seed(SEED)
    model = build_model(recipe, recipe.quick)
    model(np.zeros((1, 28, 28), np.uint8))  # builds the weights, never trains them
    untrained = TrainedModel(
        model, None, {}, {"untrained": True}, document["architecture"], model.count_params()
    )
    repository = tmp_path_factory.mktemp("random-models")

    def document_for(version: int) -> dict:
        return {**document, "version": version, "metrics": {}, "training": {"untrained": True}}

    sample = np.random.default_rng(SEED).integers(0, 256, (8, 28, 28), dtype=np.uint8)
    export_model(untrained, repository, "mnist-cnn", document_for, sample, methods=methods_for(recipe))
    return repository


def by_target(client: Client, images: np.ndarray, targets: np.ndarray, method: str) -> np.ndarray:
    """Each image's map for its own target class: one request per class (a request has one target)."""
    maps = np.zeros((len(images), 28, 28), np.float32)
    for target in np.unique(targets):
        rows = np.flatnonzero(targets == target)
        maps[rows] = client.explain(
            "mnist-cnn", images=images[rows], target=int(target), method=method
        ).maps()
    return maps


def mean_abs_spearman(first: np.ndarray, second: np.ndarray) -> float:
    """Mean over images of |Spearman rho| on the pixels either map attributes anything to: the many pixels
    both leave at exactly 0 (black, far from any stroke) would tie and agree whatever the weights."""
    rhos = []
    for a, b in zip(first.reshape(len(first), -1), second.reshape(len(second), -1), strict=True):
        used = (a != 0) | (b != 0)
        rhos.append(abs(spearmanr(a[used], b[used]).statistic))
    return float(np.mean(rhos))


def test_random_weights_explain_differently(
    client: Client,
    digits: np.ndarray,
    cnn_gradients: ExplainResult,
    random_cnn_repository: Path,
    private_server,
) -> None:
    images = digits[:RANDOMISED_DIGITS]
    targets = np.array([item[0].target_index for item in cnn_gradients.items[:RANDOMISED_DIGITS]])
    trained_maps = {
        "integrated_gradients": cnn_gradients.maps()[:RANDOMISED_DIGITS],
        "occlusion": client.explain("mnist-cnn", images=images, method="occlusion").maps(),
    }
    server: ServerProcess = private_server(random_cnn_repository)
    server.wait_serving()
    with Client(server.target, timeout=180) as random_client:
        # The untrained network really is another model: it cannot read the digits.
        guessed = random_client.classify("mnist-cnn", images=images).indices
        assert (guessed == targets).mean() < 0.5
        figures = {}
        for method, trained in trained_maps.items():
            randomised = by_target(random_client, images, targets, method)
            assert np.count_nonzero(randomised) > 0
            figures[method] = mean_abs_spearman(trained, randomised)
    # Control: the trained model's two methods agree with each other far more than either with chance,
    # so a low figure above is the weights' doing, not a metric that always reads low.
    agreement = mean_abs_spearman(trained_maps["integrated_gradients"], trained_maps["occlusion"])
    print(f"\nmodel randomisation, mean |Spearman rho| trained vs random: "
          f"{', '.join(f'{m} {v:.3f}' for m, v in figures.items())}; trained IG vs occlusion {agreement:.3f}")  # fmt: skip
    for method, figure in figures.items():
        assert figure < 0.5, (method, figure)
    assert agreement > max(figures.values())
