"""``classify-train``: train the course's models and export them, or write out the validation split.

TensorFlow is imported only inside the training commands (it takes seconds to load), so ``--help`` and
``split`` answer at once.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from classify_train.cli_data import (
    data_directory,
    data_group,
    data_options,
    default_test_data,
    user_errors_as_click,
)
from classify_train.cli_explain import export_signatures_command
from classify_train.data.split import DEFAULT_SEED
from classify_train.datasets import DATASET_NAMES
from classify_train.distribute import STRATEGIES
from classify_train.recipes import (
    ALL_MODEL_NAMES,
    MODEL_NAMES,
    RAW_TF_MODEL_NAMES,
    SOFTMAX_MODELS,
    get_recipe,
)
from classify_train.repository import existing_versions


class _ModelGroup(click.Group):
    """A group whose unknown-command error lists the models, the commonest mistake."""

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        if args and not args[0].startswith("-") and args[0] not in self.commands:
            raise click.UsageError(
                f"unknown command or model {args[0]!r}; models: {', '.join(ALL_MODEL_NAMES)}; "
                f"other commands: all, evaluate, split, weight-maps, data, tf-config, export-signatures",
                ctx,
            )
        return super().resolve_command(ctx, args)


_seed_option = click.option(
    "--seed",
    type=int,
    default=DEFAULT_SEED,
    show_default=True,
    help="Seed of the validation split and training.",
)


def _training_options(function: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(
        [
            data_options,
            click.option(
                "--export",
                "repo",
                required=True,
                type=click.Path(file_okay=False, path_type=Path),
                help="Model repository; the model is written to REPO/NAME/<next version>/.",
            ),
            click.option(
                "--epochs", type=click.IntRange(min=1), help="Override the recipe's number of epochs."
            ),
            click.option("--quick", is_flag=True, help="One epoch on a small subset: for tests and demos."),
            _seed_option,
            click.option(
                "--strategy",
                type=click.Choice(STRATEGIES),
                default="auto",
                show_default=True,
                help="tf.distribute strategy: one device, mirrored over the local GPUs, or multi-worker "
                "from TF_CONFIG (or CLASSIFY_WORKER_HOSTS + JOB_COMPLETION_INDEX); auto picks multi-worker "
                "in a cluster, mirrored with 2+ GPUs, else one. Keras models only in mirrored/multi-worker.",
            ),
            click.option(
                "--global-batch-size",
                type=click.IntRange(min=1),
                help="Batch summed over all replicas (default: the recipe's batch times the replicas); the "
                "learning rate is scaled by it / the recipe's batch.",
            ),
            click.option(
                "--resume/--no-resume",
                default=True,
                show_default=True,
                help="Continue an interrupted run of the same settings from its last finished epoch "
                "(checkpoints in REPO/.checkpoints/); --no-resume starts over.",
            ),
        ]
    ):
        function = option(function)
    return function


@click.group(cls=_ModelGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="classify-train")
def main() -> None:
    """Train the course's MNIST and IMDb models and export them into a Classify model repository."""


def _train(
    names: list[str],
    data_dir: Path | None,
    mirror: str | None,
    repo: Path,
    *,
    quick: bool,
    epochs: int | None,
    seed: int,
    resume: bool,
    strategy: str,
    global_batch_size: int | None,
) -> None:
    raw = [name for name in names if get_recipe(name).framework == "tensorflow"]
    if raw and strategy in {"mirrored", "multi-worker"}:  # said before any download or TensorFlow start
        raise click.UsageError(
            f"--strategy {strategy} trains Keras models only; {', '.join(raw)} use the course's "
            "low-level TensorFlow loop, which runs on one device: use --strategy one or auto"
        )
    from classify_train.distribute import check_cluster

    check_cluster(strategy, os.environ)
    needs = dict.fromkeys((get_recipe(name).dataset, "train") for name in names)
    directory = data_directory(data_dir, mirror, needs)
    # Hide TensorFlow's start-up INFO chatter unless the user asked for it.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    from classify_train.distribute import start_distribution
    from classify_train.pipeline import train_and_export

    # Before any other TensorFlow op: a multi-worker strategy configures the collectives at start-up.
    distribution = start_distribution(strategy, global_batch_size=global_batch_size)
    for name in names:
        result = train_and_export(
            name, directory, repo, quick=quick, epochs=epochs, seed=seed, resume=resume, echo=click.echo,
            distribution=distribution,
        )  # fmt: skip
        if result.version_dir is None:
            click.echo(
                f"{distribution.label()}{result.name}: trained (validation accuracy "
                f"{result.validation_accuracy:.4f}, {result.seconds:.1f} s); the chief exports it"
            )
            continue
        click.echo(
            f"{result.name}: exported {result.version_dir} "
            f"(validation accuracy {result.validation_accuracy:.4f}, trained in {result.seconds:.1f} s; "
            f"report {result.version_dir / 'report' / 'README.md'})"
        )
    distribution.wait_for_all_workers()


def _model_command(name: str) -> click.Command:
    @_training_options
    @user_errors_as_click
    def command(
        *,
        data_dir: Path | None,
        mirror: str | None,
        repo: Path,
        epochs: int | None,
        quick: bool,
        seed: int,
        resume: bool,
        strategy: str,
        global_batch_size: int | None,
    ) -> None:
        _train(
            [name], data_dir, mirror, repo, quick=quick, epochs=epochs, seed=seed, resume=resume,
            strategy=strategy, global_batch_size=global_batch_size,
        )  # fmt: skip

    return click.command(name, help=f"Train {name} and export it as the next version in REPO/{name}/.")(
        command
    )


for _name in ALL_MODEL_NAMES:
    main.add_command(_model_command(_name))


@main.command("all")
@_training_options
@click.option("--if-empty", is_flag=True, help="Skip every model that already has a version in REPO.")
@click.option(
    "--with-raw-tf",
    is_flag=True,
    help=f"Also train the course's low-level TensorFlow models ({', '.join(RAW_TF_MODEL_NAMES)}).",
)
@user_errors_as_click
def train_all(
    *,
    data_dir: Path | None,
    mirror: str | None,
    repo: Path,
    epochs: int | None,
    quick: bool,
    seed: int,
    resume: bool,
    strategy: str,
    global_batch_size: int | None,
    if_empty: bool,
    with_raw_tf: bool,
) -> None:
    """Train and export the four Keras models (and, with --with-raw-tf, the two raw-TensorFlow ones)."""
    names = list(MODEL_NAMES) + (list(RAW_TF_MODEL_NAMES) if with_raw_tf else [])
    if if_empty:
        for name in [n for n in names if existing_versions(repo / n)]:
            click.echo(
                f"{name}: skipped, {repo / name} already has version {existing_versions(repo / name)[-1]}"
            )
            names.remove(name)
    if names:
        _train(
            names, data_dir, mirror, repo, quick=quick, epochs=epochs, seed=seed, resume=resume,
            strategy=strategy, global_batch_size=global_batch_size,
        )  # fmt: skip


@main.command("split")
@click.argument("dataset", type=click.Choice(DATASET_NAMES))
@data_options
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Output directory.",
)
@click.option("--limit", type=click.IntRange(min=1), help="Write a stratified sample of this many rows.")
@_seed_option
@user_errors_as_click
def split_command(
    *,
    dataset: str,
    data_dir: Path | None,
    mirror: str | None,
    out_dir: Path,
    limit: int | None,
    seed: int,
) -> None:
    """Write the validation split (rows no model trained on) in standard formats, for scoring."""
    from classify_train.validation_files import write_validation_split

    clock = time.perf_counter()
    directory = data_directory(data_dir, mirror, [(dataset, "train")])
    written = write_validation_split(dataset, directory, out_dir, limit=limit, seed=seed)
    for path in written.files:
        click.echo(str(path))
    click.echo(
        f"{written.rows} validation rows written in {time.perf_counter() - clock:.1f} s "
        f"(split indices sha256 {written.indices_sha256})"
    )


@main.command("evaluate")
@click.option(
    "--model-repository",
    "repo",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Model repository holding NAME/<version>/.",
)
@click.option("--name", required=True, type=click.Choice(ALL_MODEL_NAMES), help="Model to evaluate.")
@click.option("--version", type=click.IntRange(min=1), help="Version to evaluate (default: the newest).")
@click.option(
    "--data",
    "data_path",
    type=click.Path(exists=True, path_type=Path),
    help="Labelled rows: IDX t10k-images-idx3-ubyte[.gz] (labels found beside it) or a folder with the "
    "pair, mnist.npz, imdb_test.jsonl[.gz] or any {text, label} JSON lines, aclImdb/ or aclImdb/test/ "
    "(default: the model's standard test split in the data directory, downloaded into the cache if needed).",
)
@data_options
@click.option(
    "--report",
    "report_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Also write a confusion matrix, the worst mistakes (PNG) and a README.md summary here.",
)
@user_errors_as_click
def evaluate_command(
    *,
    repo: Path,
    name: str,
    version: int | None,
    data_path: Path | None,
    data_dir: Path | None,
    mirror: str | None,
    report_dir: Path | None,
) -> None:
    """Score an exported version (its SavedModel signature, as served) on labelled data."""
    if data_path is None:
        from classify_train.evaluate import resolve_version

        resolve_version(repo, name, version)  # a missing model is said before any download starts
        dataset = get_recipe(name).dataset
        data_path = default_test_data(data_directory(data_dir, mirror, [(dataset, "test")]), dataset)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    from classify_train.evaluate import evaluate, format_evaluation, write_evaluation_report

    result = evaluate(repo, name, data_path, version=version)
    click.echo(format_evaluation(result))
    if report_dir is not None:
        click.echo(f"report: {write_evaluation_report(result, report_dir)}")


@main.command("weight-maps")
@click.option(
    "--model-repository",
    "repo",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Model repository holding NAME/<version>/.",
)
@click.option(
    "--name",
    "names",
    multiple=True,
    type=click.Choice(SOFTMAX_MODELS),
    help="A softmax model to draw, newest version; repeat for several (default: both).",
)
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="PNG to write.")
@user_errors_as_click
def weight_maps_command(*, repo: Path, names: tuple[str, ...], out: Path) -> None:
    """Draw softmax models' weight maps side by side (blue: votes for the digit, red: against)."""
    from classify_train.weight_maps import pearson, plot_side_by_side, saved_kernel

    kernels = {}
    for name in names or SOFTMAX_MODELS:
        versions = existing_versions(repo / name)
        if not versions:
            raise click.ClickException(f"no versions of {name!r} in {repo}")
        kernels[f"{name} v{versions[-1]}"] = saved_kernel(repo / name / str(versions[-1]))
    out.parent.mkdir(parents=True, exist_ok=True)
    plot_side_by_side(kernels, [str(d) for d in range(10)], out, "Softmax weights: blue for, red against")
    click.echo(str(out))
    labelled = list(kernels.items())
    for (first, a), (second, b) in itertools.pairwise(labelled):
        click.echo(f"Pearson correlation of {first} and {second} over the 7,840 weights: {pearson(a, b):.3f}")


main.add_command(data_group)


@main.command("tf-config")
@user_errors_as_click
def tf_config_command() -> None:
    """Print this worker's TF_CONFIG, built from CLASSIFY_WORKER_HOSTS (host:port of every worker, comma-
    separated) and JOB_COMPLETION_INDEX or CLASSIFY_WORKER_INDEX, as --strategy multi-worker builds it."""
    import json

    from classify_train.distribute import WORKER_HOSTS_ENV, tf_config_from_hosts

    config = tf_config_from_hosts(os.environ)
    if config is None:
        raise click.ClickException(
            f"{WORKER_HOSTS_ENV} is not set; set it to the workers' host:port, comma-separated, and "
            "JOB_COMPLETION_INDEX (or CLASSIFY_WORKER_INDEX) to this worker's position in it"
        )
    click.echo(json.dumps(config))


main.add_command(export_signatures_command)
