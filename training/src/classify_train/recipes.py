"""What each model is and how it is trained, as plain data: no TensorFlow, so the CLI can list models
and validate names instantly. ``full`` is the course's recipe; ``quick`` is one fast epoch for tests and
the demo, measured on this machine kind (2 cores) to stay well above chance."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

DatasetName = Literal["mnist", "imdb"]

IMAGE_INPUT: dict[str, Any] = {
    "kind": "image",
    "name": "images",
    "dtype": "uint8",
    "shape": [-1, 28, 28],
    "description": "uint8 grayscale 28x28 digits, white (255) strokes on black (0), as in MNIST",
}
TEXT_INPUT: dict[str, Any] = {
    "kind": "text",
    "name": "texts",
    "dtype": "string",
    "shape": [-1],
    "description": (
        "raw English review text; lowercased, HTML breaks and punctuation stripped inside the model"
    ),
}


@dataclass(frozen=True)
class Schedule:
    """How one training run goes. ``train_examples`` None means the whole training portion."""

    epochs: int
    batch_size: int
    optimizer: str  # a Keras optimizer name, e.g. "adam"
    learning_rate: float
    train_examples: int | None = None
    # Model size knobs passed to the builder (the LSTM's vocabulary, sequence length, widths).
    model_options: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Recipe:
    name: str
    dataset: DatasetName
    builder: str  # "module:function" under classify_train.models, imported only when training
    preprocessing: str
    full: Schedule
    quick: Schedule

    @property
    def task(self) -> str:
        return "image-classification" if self.dataset == "mnist" else "text-classification"

    @property
    def labels(self) -> list[str]:
        return [str(digit) for digit in range(10)] if self.dataset == "mnist" else ["negative", "positive"]

    @property
    def input_spec(self) -> dict[str, Any]:
        return dict(IMAGE_INPUT if self.dataset == "mnist" else TEXT_INPUT)

    def schedule(self, quick: bool) -> Schedule:
        return self.quick if quick else self.full


_IMAGE_PREPROCESSING = "casts the uint8 pixels to float32, divides them by 255"
_LSTM_FULL = {"vocabulary_size": 20000, "sequence_length": 200, "embedding_dim": 128, "lstm_units": 64}
# Quick: shorter sequences and smaller widths buy ~600 Adam steps in ~15-30 s, which is what an LSTM
# needs to leave the 50% plateau in one epoch (measured: 79-81% over four seeds; 6,000 long reviews
# instead gave 64-78%).
_LSTM_QUICK = {"vocabulary_size": 10000, "sequence_length": 80, "embedding_dim": 64, "lstm_units": 32}

RECIPES: dict[str, Recipe] = {
    recipe.name: recipe
    for recipe in [
        Recipe(
            name="mnist-softmax",
            dataset="mnist",
            builder="mnist:build_softmax",
            preprocessing=f"{_IMAGE_PREPROCESSING} and flattens each image to 784 values",
            full=Schedule(epochs=5, batch_size=100, optimizer="sgd", learning_rate=0.5),
            quick=Schedule(
                epochs=1, batch_size=100, optimizer="sgd", learning_rate=0.5, train_examples=20000
            ),
        ),
        Recipe(
            name="mnist-mlp",
            dataset="mnist",
            builder="mnist:build_mlp",
            preprocessing=f"{_IMAGE_PREPROCESSING} and flattens each image to 784 values",
            full=Schedule(epochs=20, batch_size=128, optimizer="rmsprop", learning_rate=0.001),
            quick=Schedule(
                epochs=1, batch_size=64, optimizer="rmsprop", learning_rate=0.001, train_examples=12000
            ),
        ),
        Recipe(
            name="mnist-cnn",
            dataset="mnist",
            builder="mnist:build_cnn",
            preprocessing=f"{_IMAGE_PREPROCESSING} and adds a channel axis (28x28x1)",
            # The Keras example used Adadelta(1.0); Adam reaches the same accuracy without its tuning.
            full=Schedule(epochs=12, batch_size=128, optimizer="adam", learning_rate=0.001),
            quick=Schedule(
                epochs=1, batch_size=32, optimizer="adam", learning_rate=0.001, train_examples=6000
            ),
        ),
        Recipe(
            name="imdb-lstm",
            dataset="imdb",
            builder="imdb:build_lstm",
            preprocessing=(
                "lowercases the text, replaces HTML <br /> breaks with spaces, strips punctuation, splits on "
                "whitespace and maps words to ids from the training vocabulary (padded or truncated to a "
                "fixed length)"
            ),
            full=Schedule(
                epochs=3, batch_size=32, optimizer="adam", learning_rate=0.001, model_options=_LSTM_FULL
            ),
            quick=Schedule(
                epochs=1,
                batch_size=32,
                optimizer="adam",
                learning_rate=0.003,
                train_examples=20000,
                model_options=_LSTM_QUICK,
            ),
        ),
    ]
}

MODEL_NAMES = tuple(RECIPES)


def get_recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}") from None
