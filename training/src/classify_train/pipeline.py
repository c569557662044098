"""Train one model from a data directory and export it: the body of ``classify-train NAME``."""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from classify_train.data.dataset import DataError, Dataset
from classify_train.data.split import ValidationSplit, carve_validation, rows
from classify_train.datasets import load_dataset
from classify_train.distribute import ONE, Distribution
from classify_train.errors import DistributionError
from classify_train.explain_methods import methods_for
from classify_train.metadata import build_model_json
from classify_train.recipes import MODEL_NAMES, Recipe, get_recipe

# Interrupted runs keep their checkpoints here, one folder per (model, settings, data) so a resumed run
# can never continue a different one; a dot-folder, so servers scanning the repository skip it.
CHECKPOINTS_DIR = ".checkpoints"

# Rows of the validation split the exported graph is checked against (cheap; covers every code path).
_VERIFY_ROWS = 64


@dataclass(frozen=True)
class TrainResult:
    name: str
    version_dir: Path | None  # None on a multi-worker run's workers other than the chief
    validation_accuracy: float
    seconds: float


def train_and_export(
    name: str,
    data_dir: Path,
    repo: Path,
    *,
    quick: bool,
    epochs: int | None,
    seed: int,
    resume: bool = True,
    report: bool = True,
    echo: Callable[[str], None] = print,
    distribution: Distribution = ONE,
) -> TrainResult:
    """Train ``name`` and publish it in ``repo``. In a multi-worker run every worker calls this; only the
    chief writes into ``repo``, the others train in step with it and export into a temporary folder."""
    recipe = get_recipe(name)
    refuse_unsupported(recipe, distribution)
    dataset = load_dataset(recipe.dataset, data_dir)
    split = carve_validation(dataset.labels, seed=seed)
    data_section = describe_data(dataset, split)
    key = run_key(recipe, quick=quick, epochs=epochs, seed=seed, data=data_section, distribution=distribution)
    run_dir = repo / CHECKPOINTS_DIR / key
    if distribution.is_chief and not resume and run_dir.exists():
        shutil.rmtree(run_dir)

    # TensorFlow loads here, not at import: the CLI's other commands and --help stay fast.
    from classify_train.export import export_model
    from classify_train.training import HISTORY_FILE, TEACHER_DIR, TENSORBOARD_DIR
    from classify_train.training import train as train_keras

    train = train_keras
    if recipe.framework == "tensorflow":  # the course's low-level TensorFlow models: their own loop
        from classify_train.rawtf.loop import train as train_raw

        train = train_raw

    def unlabelled() -> list[str]:
        try:
            extra = load_dataset(recipe.dataset, data_dir, "unsup")
        except DataError:  # optional: train without it (prepare_text_model says so)
            return []
        data_section["source_files"].update(extra.source_files)
        return list(extra.inputs)

    keras_only = {"distribution": distribution} if recipe.framework == "keras" else {}
    with distribution.worker_files(run_dir, resume=resume) as work_dir:
        trained = train(
            recipe, dataset, split, quick=quick, epochs=epochs, seed=seed, run_dir=work_dir,
            unlabelled=unlabelled, echo=echo, **keras_only,
        )  # fmt: skip
    if recipe.framework == "keras":
        trained.training["distribution"] = distribution.describe(recipe.schedule(quick))

    def document_for(version: int) -> dict:
        return build_model_json(
            recipe,
            version,
            architecture=trained.architecture,
            parameters=trained.parameters,
            metrics=trained.metrics,
            quick=quick,
            training=trained.training,
            data=data_section,
        )

    def add_files(staging: Path) -> None:
        """TensorBoard logs, the epoch history and the report go into the version before it appears."""
        if (run_dir / TENSORBOARD_DIR).is_dir():
            shutil.copytree(run_dir / TENSORBOARD_DIR, staging / TENSORBOARD_DIR)
        if (run_dir / TEACHER_DIR / TENSORBOARD_DIR).is_dir():  # self-training's first model
            shutil.copytree(run_dir / TEACHER_DIR / TENSORBOARD_DIR, staging / TENSORBOARD_DIR / TEACHER_DIR)
        (staging / HISTORY_FILE).write_text(json.dumps(trained.history, indent=1) + "\n", encoding="utf-8")
        if report:
            from classify_train.report import write_training_report

            write_training_report(staging, recipe, trained, dataset, split, document=document_for(0))

    sample, _ = rows(dataset, split.validation_indices[:_VERIFY_ROWS])
    methods = methods_for(recipe)
    if not distribution.is_chief:
        # The TF docs' advice for the workers other than the chief: save the same way, into a temporary
        # folder that is then dropped; the chief alone publishes, and cleans the checkpoints up.
        with tempfile.TemporaryDirectory(prefix=f"classify-worker-{distribution.task_index}-") as scratch:
            export_model(trained, Path(scratch), name, document_for, sample, methods=methods)
        return TrainResult(name, None, trained.metrics["validation_accuracy"], trained.training["seconds"])
    version_dir = export_model(
        trained, repo, name, document_for, sample, methods=methods, add_files=add_files
    )
    shutil.rmtree(run_dir, ignore_errors=True)
    _remove_if_empty(repo / CHECKPOINTS_DIR)
    return TrainResult(name, version_dir, trained.metrics["validation_accuracy"], trained.training["seconds"])


def run_key(
    recipe: Recipe,
    *,
    quick: bool,
    epochs: int | None,
    seed: int,
    data: dict,
    distribution: Distribution = ONE,
) -> str:
    """Names the checkpoint folder: everything that must match for a resumed run to be the same run
    (the schedule as scaled for the replicas: another global batch is another run)."""
    settings = {
        "schedule": asdict(distribution.scale(recipe.schedule(quick))),
        "epochs": epochs,
        "seed": seed,
        "quick": quick,
        "data": data,
    }
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()
    return f"{recipe.name}{'-quick' if quick else ''}-{digest[:12]}"


def refuse_unsupported(recipe: Recipe, distribution: Distribution) -> None:
    """The raw-TensorFlow loop runs on one device: its hand-written optimizers update plain variables,
    which a strategy's replicas could not keep in step without a loop rewritten for ``strategy.run``."""
    if recipe.framework == "tensorflow" and distribution.distributed:
        raise DistributionError(
            f"{recipe.name} trains with the course's low-level TensorFlow loop, which runs on one device; "
            f"use --strategy one (or auto, without a cluster) for it, or a Keras model "
            f"({', '.join(MODEL_NAMES)}) with --strategy {distribution.mode}"
        )


def _remove_if_empty(directory: Path) -> None:
    with contextlib.suppress(OSError):
        directory.rmdir()


def describe_data(dataset: Dataset, split: ValidationSplit) -> dict:
    return {"source_files": dict(dataset.source_files), "validation_split": split.describe(dataset)}
