"""What each model is and how it is trained, as plain data: no TensorFlow, so the CLI can list models
and validate names instantly. ``full`` aims past the published results (docs/training.md#results); ``quick``
is one fast epoch for tests and the demo, measured on this machine kind (2 cores) to stay well above
chance."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

DatasetName = Literal["mnist", "imdb"]
# "keras": a Keras model fitted by training.py; "tensorflow": the course's low-level TensorFlow version
# (tf.Module, tf.GradientTape), trained by rawtf/loop.py. Both export the same serving contract.
Framework = Literal["keras", "tensorflow"]

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
    optimizer: str  # a Keras optimizer name, e.g. "adam" (raw TensorFlow: "gradient-descent" or "adam")
    learning_rate: float
    train_examples: int | None = None
    # Model size knobs passed to the builder (the LSTM's vocabulary, sequence length, widths).
    model_options: dict[str, Any] = field(default_factory=dict)
    # "constant", or "cosine": linear warm-up over the first epoch, then cosine decay to zero.
    learning_rate_schedule: str = "constant"
    # Extra optimizer settings, e.g. {"weight_decay": 1e-4} with "adamw".
    optimizer_options: dict[str, float] = field(default_factory=dict)
    # Random affine distortions of the training images (never of validation or served ones):
    # {"rotation": degrees, "shift": pixels, "zoom": fraction}. Empty: none.
    augmentation: dict[str, float] = field(default_factory=dict)
    # Text models: learn the vocabulary from the unlabelled reviews too (never from validation rows).
    vocabulary_from_unlabelled: bool = False
    # Text models: pre-train the word embeddings on training + unlabelled reviews (skip-gram, epochs).
    pretrain_embedding_epochs: int = 0
    # Text models: self-training. A first model (the teacher) is trained as usual, labels the unlabelled
    # reviews it is at least this sure of, and the exported model is trained afresh on the training
    # rows plus those. 0: off.
    pseudo_label_confidence: float = 0.0

    def describe(self) -> dict[str, Any]:
        """The settings model.json records, beside the measured ones."""
        described: dict[str, Any] = {"learning_rate_schedule": self.learning_rate_schedule}
        if self.optimizer_options:
            described["optimizer_options"] = dict(self.optimizer_options)
        if self.augmentation:
            described["augmentation"] = dict(self.augmentation)
        if self.model_options:
            described["model_options"] = dict(self.model_options)
        if self.vocabulary_from_unlabelled:
            described["vocabulary_from_unlabelled"] = True
        if self.pretrain_embedding_epochs:
            described["pretrain_embedding_epochs"] = self.pretrain_embedding_epochs
        if self.pseudo_label_confidence:
            described["pseudo_label_confidence"] = self.pseudo_label_confidence
        return described


@dataclass(frozen=True)
class Recipe:
    name: str
    dataset: DatasetName
    builder: str  # "module:function" under classify_train.models, imported only when training
    preprocessing: str
    full: Schedule
    quick: Schedule
    framework: Framework = "keras"
    # Rows the server may merge into one execution of this model (model.json "max_batch_size"); None:
    # the server's --max-batch-size. Small models run a 128-row batch in about their fixed cost per call.
    max_batch_size: int | None = None

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
# Full: a bidirectional LSTM over up to 600 words (95% of reviews whole; a longer one keeps its first 150
# and last 450, where the verdict usually is), max and mean pooled over time; vocabulary from the training
# and the 50,000 unlabelled reviews, embeddings started from skip-gram vectors pre-trained on the same
# texts. Measured on the validation split (2026-11-27, one run each): first 400 words 0.8984-0.9004,
# first 150 + last 450 0.9004; dropout 0.4 0.9004; weight EMA 0.900; two such models averaged 0.898.
# 128 units a direction instead of 64 (2026-11-28): 0.9028 (0.9044 after epoch 3) against 0.9004, at
# about twice the time per epoch.
_LSTM_FULL: dict[str, Any] = {
    "vocabulary_size": 30000,
    "sequence_length": 600,
    "head_words": 150,
    "embedding_dim": 128,
    "lstm_units": 128,
    "bidirectional": True,
    "pooling": "max-mean",
    "dropout": 0.25,
}
# Quick: shorter sequences and smaller widths buy ~600 Adam steps in ~15-30 s, which is what an LSTM
# needs to leave the 50% plateau in one epoch (measured: 79-81% over four seeds; 6,000 long reviews
# instead gave 64-78%).
_LSTM_QUICK = {"vocabulary_size": 10000, "sequence_length": 80, "embedding_dim": 64, "lstm_units": 32}
# Small random rotations, shifts and zooms of the training digits: the classic MNIST augmentation.
_DISTORTIONS = {"rotation": 10.0, "shift": 2.0, "zoom": 0.1}

# Measured (docs/performance.md, 2026-12-06): 4 callers of 128 images merge two at a time at 512, and
# the quick MLP serves 71,120 images/s against 55,200 at 128, the softmax 153,019 against 117,078.
SMALL_MODEL_BATCH = 512

RECIPES: dict[str, Recipe] = {
    recipe.name: recipe
    for recipe in [
        Recipe(
            name="mnist-softmax",
            dataset="mnist",
            builder="mnist:build_softmax",
            max_batch_size=SMALL_MODEL_BATCH,
            preprocessing=f"{_IMAGE_PREPROCESSING} and flattens each image to 784 values",
            # The course used plain SGD(0.5) for one pass; Adam with a cosine decay converges the same
            # single linear layer much closer to its optimum. Zero start and a tiny L2 penalty keep the
            # weights of rarely inked pixels near zero (measured: L2 1e-4 cost 0.4 points of accuracy);
            # a smoothness penalty between neighbouring pixels turns the speckled converged weight maps
            # into strokes. Measured on the validation split (2026-11-27): smooth 0 -> 0.9277 (speckle),
            # 3e-5 -> 0.9267 (strokes), 5e-5 -> 0.9253, 1e-4 -> 0.9247, 1e-3 -> 0.918.
            full=Schedule(
                epochs=40,
                batch_size=128,
                optimizer="adam",
                learning_rate=0.002,
                learning_rate_schedule="cosine",
                model_options={"zero_init": True, "l2": 1e-5, "smooth": 3e-5},
            ),
            quick=Schedule(
                epochs=1, batch_size=100, optimizer="sgd", learning_rate=0.5, train_examples=20000
            ),
        ),
        Recipe(
            name="mnist-mlp",
            dataset="mnist",
            builder="mnist:build_mlp",
            max_batch_size=SMALL_MODEL_BATCH,
            preprocessing=f"{_IMAGE_PREPROCESSING} and flattens each image to 784 values",
            full=Schedule(
                epochs=15,
                batch_size=128,
                optimizer="adam",
                learning_rate=0.001,
                learning_rate_schedule="cosine",
                augmentation=_DISTORTIONS,
                model_options={"hidden_units": 1024, "hidden_layers": 2, "dropout": 0.3},
            ),
            quick=Schedule(
                epochs=1, batch_size=64, optimizer="rmsprop", learning_rate=0.001, train_examples=12000
            ),
        ),
        Recipe(
            name="mnist-cnn",
            dataset="mnist",
            builder="mnist:build_cnn",
            preprocessing=f"{_IMAGE_PREPROCESSING} and adds a channel axis (28x28x1)",
            full=Schedule(
                epochs=12,
                batch_size=128,
                optimizer="adam",
                learning_rate=0.002,
                learning_rate_schedule="cosine",
                augmentation=_DISTORTIONS,
                model_options={"style": "bn"},
            ),
            # The course's network (the Keras example used Adadelta(1.0); Adam needs no tuning).
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
                epochs=4,
                batch_size=128,
                optimizer="adam",
                learning_rate=0.002,
                learning_rate_schedule="cosine",
                model_options=_LSTM_FULL,
                vocabulary_from_unlabelled=True,
                pretrain_embedding_epochs=3,
                # Self-training (pseudo_label_confidence) is not used: with 0.9 the teacher (this recipe,
                # 0.9004) labelled 40,218 unlabelled reviews and the 4-epoch student ended at 0.8964,
                # overfitting them (training accuracy 0.99, validation loss rising from epoch 1; it led
                # 0.9032 to 0.8964 after 2 epochs in a trial run). 2026-11-28, 42 min 32 s for both.
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
        # The course's low-level TensorFlow versions (framework "tensorflow"; rawtf/ trains them).
        Recipe(
            name="mnist-softmax-tf",
            dataset="mnist",
            builder="mnist_tf:SoftmaxRegression",
            max_batch_size=SMALL_MODEL_BATCH,
            preprocessing=f"{_IMAGE_PREPROCESSING} and flattens each image to 784 values",
            framework="tensorflow",
            # The course's recipe: W and b from zeros, plain gradient descent at 0.5 on the cross-entropy,
            # batches of 100. Its 1,000 steps stop short of the floor here, and the constant rate leaves
            # the last epoch's figure noisy, so: 30 epochs, the rate decayed from 0.5 (cosine). Measured
            # on the validation split (2026-12-03): constant 0.5 after 5/10/20 epochs 0.9190/0.9195/
            # 0.9222 (±0.003 epoch to epoch); cosine 3/5/8/10/15/30/50 epochs 0.9153/0.9167/0.9185/
            # 0.9205/0.9223/0.9237/0.9237. The maps are smooth strokes up to ~8 epochs and gather
            # speckle after; an L2 penalty (1e-4 to 1e-3) smoothed them little and cost accuracy.
            full=Schedule(
                epochs=30,
                batch_size=100,
                optimizer="gradient-descent",
                learning_rate=0.5,
                learning_rate_schedule="cosine",
            ),
            quick=Schedule(
                epochs=1,
                batch_size=100,
                optimizer="gradient-descent",
                learning_rate=0.5,
                train_examples=20000,
            ),
        ),
        Recipe(
            name="mnist-cnn-tf",
            dataset="mnist",
            builder="mnist_tf:CourseCNN",
            preprocessing=f"{_IMAGE_PREPROCESSING} and adds a channel axis (28x28x1)",
            framework="tensorflow",
            # The course trained this network with Adam 1e-4 for 20,000 batches of 50 (18 epochs); a
            # higher rate with a cosine decay gets there in far fewer epochs.
            full=Schedule(
                epochs=12,
                batch_size=100,
                optimizer="adam",
                learning_rate=0.001,
                learning_rate_schedule="cosine",
            ),
            quick=Schedule(
                epochs=1,
                batch_size=50,
                optimizer="adam",
                learning_rate=0.001,
                train_examples=6000,
                model_options={"dense": 256},
            ),
        ),
    ]
}

# The models `classify-train all` trains: the Keras four, which the demo, the tests' quick repository and
# the benchmarks serve. The raw-TensorFlow two are trained by name or by `all --with-raw-tf`.
MODEL_NAMES = tuple(name for name, recipe in RECIPES.items() if recipe.framework == "keras")
RAW_TF_MODEL_NAMES = tuple(name for name, recipe in RECIPES.items() if recipe.framework == "tensorflow")
ALL_MODEL_NAMES = tuple(RECIPES)
# Softmax regressions: one weight per pixel and digit, drawn as weight maps in their reports.
SOFTMAX_MODELS = ("mnist-softmax", "mnist-softmax-tf")


def get_recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; choose one of {', '.join(ALL_MODEL_NAMES)}") from None
