"""The softmax models' weight maps: each digit's 784 weights as a 28x28 picture, blue where ink votes for
the digit and red where it votes against. ``softmax_kernel`` reads them from a freshly trained model,
``saved_kernel`` from an exported version, and ``plot_side_by_side`` draws several models' maps in rows
(``classify-train weight-maps``; the picture in docs/training.md)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from classify_train.errors import ExportError

if TYPE_CHECKING:
    from classify_train.training import TrainedModel

KERNEL_SHAPE = (784, 10)
# matplotlib's RdBu runs from red (lowest) to blue (highest): a positive weight (ink votes for the digit)
# is blue and a negative one red, as in the course's picture of these maps.
WEIGHT_COLOURS = "RdBu"
_DPI = 110  # as the report's figures
# A few rarely inked pixels get extreme weights; each model's maps are scaled to this percentile of its
# absolute weights so the strokes show (the colour bar's arrows mark the clipped ends).
_CLIP_PERCENTILE = 99.5


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # no display: render straight to files
    import matplotlib.pyplot as plt

    return plt


def softmax_kernel(trained: TrainedModel) -> np.ndarray:
    """The (784, 10) weights of a trained softmax regression, Keras (its one Dense layer) or raw TF."""
    import keras

    if isinstance(trained.model, keras.Model):
        return np.asarray(trained.model.layers[-1].get_weights()[0])
    return np.asarray(trained.model.weights.numpy())


def saved_kernel(version_dir: Path) -> np.ndarray:
    """The one (784, 10) variable of an exported version, read from its checkpoint files (no graph)."""
    import tensorflow as tf

    prefix = str(version_dir / "variables" / "variables")
    if not Path(prefix + ".index").is_file():
        raise ExportError(f"{version_dir}: no SavedModel variables (variables/variables.index)")
    shaped = [name for name, shape in tf.train.list_variables(prefix) if tuple(shape) == KERNEL_SHAPE]
    # Keras' export lists each variable under two paths; they hold the same values.
    distinct: list[np.ndarray] = []
    for name in shaped:
        value = np.asarray(tf.train.load_variable(prefix, name))
        if not any(np.array_equal(value, seen) for seen in distinct):
            distinct.append(value)
    if len(distinct) != 1:
        raise ExportError(
            f"{version_dir}: expected one {KERNEL_SHAPE[0]}x{KERNEL_SHAPE[1]} weight matrix (a softmax "
            f"regression), found {len(distinct)}"
        )
    return distinct[0]


def pearson(first: np.ndarray, second: np.ndarray) -> float:
    """Pearson correlation over all the weights of two kernels of the same shape."""
    return float(np.corrcoef(np.ravel(first), np.ravel(second))[0, 1])


def plot_side_by_side(
    kernels: dict[str, np.ndarray], class_names: Sequence[str], path: Path, title: str
) -> Path:
    """One row per model, one column per digit; each model on its own symmetric scale."""
    plt = _pyplot()
    figure, axes = plt.subplots(
        len(kernels), len(class_names), figsize=(1.3 * len(class_names) + 1.2, 1.5 * len(kernels) + 0.8),
        squeeze=False,
    )  # fmt: skip
    image = None
    for index, (model, kernel) in enumerate(kernels.items()):
        maps = kernel.T.reshape(len(class_names), 28, 28)
        limit = float(np.percentile(np.abs(maps), _CLIP_PERCENTILE)) or 1.0
        for axis, weights, name in zip(axes[index], maps / limit, class_names, strict=True):
            image = axis.imshow(weights, cmap=WEIGHT_COLOURS, vmin=-1, vmax=1)
            axis.set_xticks([])
            axis.set_yticks([])
            if index == 0:
                axis.set_title(name)
        axes[index][0].set_ylabel(model, fontsize=9)
    figure.suptitle(title)
    figure.colorbar(
        image, ax=axes.ravel().tolist(), fraction=0.02, pad=0.02, extend="both",
        label=f"weight / its model's {_CLIP_PERCENTILE:g}th percentile",
    )  # fmt: skip
    figure.savefig(path, dpi=_DPI)
    plt.close(figure)
    return path
