"""The report written beside each exported version (``REPO/NAME/VERSION/report/``) and by
``classify-train evaluate --report``: PNG pictures plus a markdown summary linking them.

- ``learning_curves.png``: loss and accuracy per epoch, training and validation;
- ``confusion_matrix.png``: validation (or evaluated) rows by true and predicted class;
- ``misclassified.png``: the wrong predictions the model was most sure of (digits, or review snippets
  with their scores);
- ``weights.png`` (mnist-softmax and mnist-softmax-tf): each digit's 784 weights as a 28x28 map, blue
  where ink votes for the digit, red where it votes against (the course's colours);
- ``README.md``: the figures, the model's numbers, links.

No network, no display: matplotlib's Agg backend renders straight to files.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from classify_train.recipes import SOFTMAX_MODELS
from classify_train.weight_maps import WEIGHT_COLOURS

if TYPE_CHECKING:
    from classify_train.data.dataset import Dataset
    from classify_train.data.split import ValidationSplit
    from classify_train.recipes import Recipe
    from classify_train.training import TrainedModel

REPORT_DIR = "report"
SUMMARY = "README.md"
LEARNING_CURVES = "learning_curves.png"
CONFUSION = "confusion_matrix.png"
MISCLASSIFIED = "misclassified.png"
WEIGHTS = "weights.png"
_WORST_IMAGES = 40
_WORST_TEXTS = 8
_SNIPPET_CHARS = 300
_DPI = 110


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(labels, dtype=np.int64), np.asarray(predicted, dtype=np.int64)), 1)
    return matrix


def worst_mistakes(probabilities: np.ndarray, labels: np.ndarray, count: int) -> np.ndarray:
    """Indices of wrong predictions, the most confident first."""
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    confidence = probabilities[wrong, predicted[wrong]]
    return wrong[np.argsort(-confidence, kind="stable")][:count]


def plot_learning_curves(history: list[dict[str, float]], path: Path, title: str) -> Path:
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    epochs = [entry["epoch"] for entry in history]
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, metric in zip(axes, ("loss", "accuracy"), strict=True):
        for key, label, style in ((metric, "training", "o-"), (f"val_{metric}", "validation", "s-")):
            values = [entry.get(key) for entry in history]
            if any(v is not None for v in values):
                axis.plot(epochs, values, style, label=label, markersize=3)
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_ylabel(metric)
        axis.grid(alpha=0.3)
        axis.legend()
    best = max((entry.get("val_accuracy", 0.0) for entry in history), default=0.0)
    axes[1].set_title(f"final validation accuracy {history[-1].get('val_accuracy', 0):.4f} (best {best:.4f})")
    axes[0].set_title("loss")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=_DPI)
    plt.close(figure)
    return path


def plot_confusion(matrix: np.ndarray, class_names: Sequence[str], path: Path, title: str) -> Path:
    plt = _pyplot()
    size = 3 + 0.5 * len(class_names)
    figure, axis = plt.subplots(figsize=(size + 1, size))
    # Colour by each row's share so the off-diagonal mistakes show; the counts are written in the cells.
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    image = axis.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for (row, column), count in np.ndenumerate(matrix):
        colour = "white" if shares[row, column] > 0.5 else "black"
        axis.text(column, row, str(count), ha="center", va="center", color=colour, fontsize=8)
    axis.set_xticks(range(len(class_names)), class_names)
    axis.set_yticks(range(len(class_names)), class_names)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    accuracy = np.trace(matrix) / max(matrix.sum(), 1)
    axis.set_title(f"{title}\naccuracy {accuracy:.4f} on {matrix.sum()} rows")
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04, label="share of the true class")
    figure.tight_layout()
    figure.savefig(path, dpi=_DPI)
    plt.close(figure)
    return path


def plot_worst_images(
    images: np.ndarray,
    labels: np.ndarray,
    probabilities: np.ndarray,
    class_names: Sequence[str],
    path: Path,
    *,
    title: str,
) -> Path:
    plt = _pyplot()
    worst = worst_mistakes(probabilities, labels, _WORST_IMAGES)
    columns = 8
    rows_ = max(1, int(np.ceil(len(worst) / columns)))
    figure, axes = plt.subplots(rows_, columns, figsize=(columns * 1.4, rows_ * 1.7 + 0.6))
    for axis in np.atleast_1d(axes).ravel():
        axis.axis("off")
    for axis, index in zip(np.atleast_1d(axes).ravel(), worst, strict=False):
        predicted = int(probabilities[index].argmax())
        axis.imshow(images[index], cmap="gray_r", vmin=0, vmax=255)
        axis.set_title(
            f"{class_names[int(labels[index])]}→{class_names[predicted]} "
            f"{probabilities[index, predicted]:.2f}",
            fontsize=8,
        )
    wrong = int(np.sum(probabilities.argmax(axis=1) != labels))
    figure.suptitle(f"{title}: the {len(worst)} most confident of {wrong} mistakes (true→predicted p)")
    figure.tight_layout()
    figure.savefig(path, dpi=_DPI)
    plt.close(figure)
    return path


# Some IMDb reviews carry Windows-1252 punctuation decoded as Latin-1: U+0080-U+009F control characters
# (U+0096 was an en dash) that no font draws. The report shows what the reviewer typed; the model is
# still fed the raw text.
_C1_AS_CP1252 = {code: bytes([code]).decode("cp1252", errors="ignore") for code in range(0x80, 0xA0)}


def snippet(text: str, chars: int = _SNIPPET_CHARS) -> str:
    flat = " ".join(text.translate(_C1_AS_CP1252).replace("<br />", " ").split())
    return flat if len(flat) <= chars else flat[: chars - 1].rsplit(" ", 1)[0] + " …"


def plot_worst_texts(
    texts: Sequence[str],
    labels: np.ndarray,
    probabilities: np.ndarray,
    class_names: Sequence[str],
    path: Path,
    *,
    title: str,
) -> Path:
    plt = _pyplot()
    worst = worst_mistakes(probabilities, labels, _WORST_TEXTS)
    figure = plt.figure(figsize=(11, 1.0 + 1.1 * max(1, len(worst))))
    wrong = int(np.sum(probabilities.argmax(axis=1) != labels))
    figure.suptitle(f"{title}: the {len(worst)} most confident of {wrong} mistakes", fontsize=11)
    top = 0.93
    step = 0.9 / max(1, len(worst))
    for index in worst:
        predicted = int(probabilities[index].argmax())
        header = (
            f"#{index}  true {class_names[int(labels[index])]}, predicted {class_names[predicted]} "
            f"with p={probabilities[index, predicted]:.3f}"
        )
        body = "\n".join(textwrap.wrap(snippet(texts[index]), 130)[:4])
        figure.text(0.02, top, header, fontsize=9, weight="bold", va="top", color="#b2182b")
        figure.text(0.02, top - 0.02 * (10 / max(1, len(worst))), body, fontsize=8, va="top", family="serif")
        top -= step
    figure.savefig(path, dpi=_DPI)
    plt.close(figure)
    return path


def plot_softmax_weights(kernel: np.ndarray, class_names: Sequence[str], path: Path, title: str) -> Path:
    """The (784, 10) kernel as ten 28x28 maps on one symmetric blue/red scale (blue: votes for)."""
    plt = _pyplot()
    maps = kernel.T.reshape(len(class_names), 28, 28)
    # A few rarely inked pixels get extreme weights; scale to the 99.5th percentile so the strokes show
    # (the colour bar's arrows mark the clipped ends).
    limit = float(np.percentile(np.abs(maps), 99.5)) or 1.0
    figure, axes = plt.subplots(2, 5, figsize=(11, 5))
    image = None
    for axis, weights, name in zip(axes.ravel(), maps, class_names, strict=True):
        image = axis.imshow(weights, cmap=WEIGHT_COLOURS, vmin=-limit, vmax=limit)
        axis.set_title(name)
        axis.axis("off")
    figure.suptitle(f"{title}: each pixel's weight for each digit (blue for, red against)")
    figure.colorbar(image, ax=axes.ravel().tolist(), fraction=0.025, pad=0.02, label="weight", extend="both")
    figure.savefig(path, dpi=_DPI)
    plt.close(figure)
    return path


def write_prediction_figures(
    out_dir: Path,
    inputs: np.ndarray | Sequence[str],
    labels: np.ndarray,
    probabilities: np.ndarray,
    class_names: Sequence[str],
    *,
    title: str,
) -> dict[str, Path]:
    """Confusion matrix and worst mistakes for any scored rows (validation, test, ...)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    predicted = probabilities.argmax(axis=1)
    matrix = confusion_matrix(labels, predicted, len(class_names))
    figures = {"confusion": plot_confusion(matrix, class_names, out_dir / CONFUSION, title)}
    if isinstance(inputs, np.ndarray):
        figures["misclassified"] = plot_worst_images(
            inputs, labels, probabilities, class_names, out_dir / MISCLASSIFIED, title=title
        )
    else:
        figures["misclassified"] = plot_worst_texts(
            inputs, labels, probabilities, class_names, out_dir / MISCLASSIFIED, title=title
        )
    return figures


def write_training_report(
    version_dir: Path,
    recipe: Recipe,
    trained: TrainedModel,
    dataset: Dataset,
    split: ValidationSplit,
    *,
    document: dict[str, Any],
) -> Path:
    """All figures for a freshly trained model, from its validation predictions; returns the summary."""
    from classify_train.data.split import rows
    from classify_train.export import keras_probabilities

    out_dir = version_dir / REPORT_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    inputs, labels = rows(dataset, split.validation_indices)
    probabilities = batched(lambda chunk: keras_probabilities(trained, chunk), inputs)
    title = recipe.name + (" (quick)" if document.get("quick") else "")
    figures: dict[str, Path] = {}
    if trained.history:
        figures["curves"] = plot_learning_curves(trained.history, out_dir / LEARNING_CURVES, title)
    figures.update(
        write_prediction_figures(out_dir, inputs, labels, probabilities, recipe.labels, title=title)
    )
    if recipe.name in SOFTMAX_MODELS:  # one linear layer: its weights are pictures
        from classify_train.weight_maps import softmax_kernel

        kernel = softmax_kernel(trained)
        figures["weights"] = plot_softmax_weights(kernel, recipe.labels, out_dir / WEIGHTS, title)
    return write_summary(
        out_dir, document, labels, probabilities, recipe.labels, figures=figures, inputs=inputs
    )


def batched(function: Any, inputs: np.ndarray | Sequence[str], size: int = 2048) -> np.ndarray:
    return np.concatenate([function(inputs[i : i + size]) for i in range(0, len(inputs), size)])


def write_summary(
    out_dir: Path,
    document: dict[str, Any],
    labels: np.ndarray,
    probabilities: np.ndarray,
    class_names: Sequence[str],
    *,
    figures: dict[str, Path],
    inputs: np.ndarray | Sequence[str],
    heading: str | None = None,
    scored_on: str = "the validation split (never trained on)",
) -> Path:
    training = document.get("training", {})
    predicted = probabilities.argmax(axis=1)
    accuracy = float(np.mean(predicted == labels)) if len(labels) else float("nan")
    lines = [
        f"# {heading or document.get('name', 'model')} report",
        "",
        f"Scored on {scored_on}: **accuracy {accuracy:.4f}** on {len(labels)} rows.",
        "",
        "| | |",
        "|---|---|",
    ]
    facts = {
        "model": f"{document.get('name')} (quick)" if document.get("quick") else document.get("name"),
        "architecture": document.get("architecture"),
        "parameters": f"{document.get('parameters', 0):,}",
        "validation accuracy (model.json)": document.get("metrics", {}).get("validation_accuracy"),
        "validation loss (model.json)": document.get("metrics", {}).get("validation_loss"),
        "epochs": training.get("epochs"),
        "training seconds": training.get("seconds"),
        "optimizer": f"{training.get('optimizer')}, lr {training.get('learning_rate')}, "
        f"{training.get('learning_rate_schedule', 'constant')}",
        "augmentation": training.get("augmentation"),
        "self-training": training.get("self_training"),
        "seed": training.get("seed"),
        "validation split sha256": document.get("data", {}).get("validation_split", {}).get("indices_sha256"),
    }
    lines += [f"| {key} | `{value}` |" for key, value in facts.items() if value is not None]
    lines.append("")
    captions = {
        "curves": "Learning curves",
        "confusion": "Confusion matrix",
        "misclassified": "Most confident mistakes",
        "weights": "Softmax weights: how each pixel votes for each digit",
    }
    for key, caption in captions.items():
        if key in figures:
            lines += [f"## {caption}", "", f"![{caption}]({figures[key].name})", ""]
    if not isinstance(inputs, np.ndarray):
        lines += ["## Most confident mistakes, as text", ""]
        for index in worst_mistakes(probabilities, labels, _WORST_TEXTS):
            guess = int(predicted[index])
            lines.append(
                f"- #{index} true **{class_names[int(labels[index])]}**, predicted "
                f"**{class_names[guess]}** (p={probabilities[index, guess]:.3f}): "
                f"{snippet(inputs[index], 200)}"
            )
        lines.append("")
    lines += [
        "TensorBoard: `tensorboard --logdir ../tensorboard`; per-epoch numbers: `../history.json`.",
        "",
    ]
    path = out_dir / SUMMARY
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
