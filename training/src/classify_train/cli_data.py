"""The data side of ``classify-train``: the ``--data-dir``/``--mirror`` options every data-reading command
shares, the lookup that downloads into the user cache, and the operators' ``data fetch|verify|where``."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import click

from classify_train.data.datadir import DATA_DIR_ENV, locate_data_dir, search_order
from classify_train.data.dataset import DataError
from classify_train.data.remote.manifest import MANIFEST_ENV, MIRROR_ENV
from classify_train.datasets import DATASET_NAMES
from classify_train.errors import USER_ERRORS

Need = tuple[str, str]

data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help=f"Directory holding mnist/ and imdb/ data (default: ${DATA_DIR_ENV}, else the user cache, "
    "which is filled by download).",
)
mirror_option = click.option(
    "--mirror",
    metavar="URL",
    help=f"Download from this base URL, under which the canonical file names are found (default: "
    f"${MIRROR_ENV}, else the public locations).",
)


def data_options(function: Callable[..., Any]) -> Callable[..., Any]:
    return data_dir_option(mirror_option(function))


def user_errors_as_click(function: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the errors a user can fix (missing data, bad files) into one-line messages, not tracebacks."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except USER_ERRORS as exc:
            raise click.ClickException(str(exc)) from exc

    return wrapper


def data_directory(data_dir: Path | None, mirror: str | None, needs: Iterable[Need]) -> Path:
    """The data directory in the documented order, with the needed splits downloaded into the user cache
    when it is the one chosen and they are not there yet."""
    from classify_train.data.remote.fetch import ensure_splits, manifest_for

    location = locate_data_dir(data_dir)
    needs = list(needs)
    return ensure_splits(location, needs, manifest_for(mirror) if location.is_cache else {})


def default_test_data(directory: Path, dataset: str) -> Path:
    """Where the standard test split is in a data directory, for ``evaluate`` without ``--data``."""
    if dataset == "mnist":
        candidates = [
            folder / name
            for folder in (directory / "mnist", directory)
            for name in ("t10k-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte", "mnist.npz")
        ]
    else:
        candidates = [
            folder / name
            for folder in (directory / "imdb", directory)
            for name in ("imdb_test.jsonl.gz", "imdb_test.jsonl", "aclImdb")
        ]
    found = next((path for path in candidates if path.exists()), None)
    if found is None:
        looked_for = ", ".join(map(str, candidates))
        raise DataError(f"no {dataset} test split in {directory}: looked for {looked_for}")
    return found


@click.group("data")
def data_group() -> None:
    """Fetch, verify and locate the data sets (for operators; training fetches what it needs itself)."""


@data_group.command("where")
@data_dir_option
def where_command(*, data_dir: Path | None) -> None:
    """Print the data directory the other commands would use, and the order it was chosen in."""
    try:
        location = locate_data_dir(data_dir)
        click.echo(f"{location.path} (from {location.origin})")
    except DataError as exc:
        click.echo(f"none usable: {exc}")
    click.echo("search order:")
    for number, (origin, value) in enumerate(search_order(data_dir), start=1):
        click.echo(f"  {number}. {origin}: {value if value is not None else '(not set)'}")


@data_group.command("fetch")
@click.argument("datasets", nargs=-1, type=click.Choice(DATASET_NAMES))
@data_options
@click.option(
    "--manifest",
    "manifest_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help=f"JSON manifest of {{file name: {{url, sha256}}}} replacing the pinned entries it names, for a "
    f"mirror of re-packed files (default: ${MANIFEST_ENV}).",
)
@user_errors_as_click
def fetch_command(
    *, datasets: tuple[str, ...], data_dir: Path | None, mirror: str | None, manifest_path: Path | None
) -> None:
    """Download the train and test splits (of DATASETS, default all) into the data directory."""
    from classify_train.data.remote.download import UnreachableError
    from classify_train.data.remote.fetch import (
        ALL_NEEDS,
        fetch_split,
        has_split,
        manifest_for,
        offline_message,
    )

    location = locate_data_dir(data_dir)
    location.path.mkdir(parents=True, exist_ok=True)
    manifest = manifest_for(mirror, manifest_path)
    for need in [n for n in ALL_NEEDS if n[0] in (datasets or DATASET_NAMES)]:
        if has_split(location.path, need):
            click.echo(f"{need[0]} {need[1]}: present in {location.path}")
            continue
        try:
            written = fetch_split(location.path, need, manifest)
        except UnreachableError as exc:
            raise DataError(offline_message(location.path, need, manifest, exc)) from exc
        for path in written:
            click.echo(f"{need[0]} {need[1]}: wrote {path}")


@data_group.command("verify")
@data_dir_option
@click.option(
    "--manifest",
    "manifest_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help=f"Check against this JSON manifest's digests (default: ${MANIFEST_ENV}, else the pinned ones).",
)
@user_errors_as_click
def verify_command(*, data_dir: Path | None, manifest_path: Path | None) -> None:
    """Check the sha256 of every known data file present in the data directory against its pin."""
    from classify_train.data.remote.fetch import manifest_for
    from classify_train.data.remote.verify import MISMATCH, verify_folder

    directory = locate_data_dir(data_dir).path
    checks = verify_folder(directory, manifest_for(None, manifest_path)) if directory.is_dir() else []
    if not checks:
        raise click.ClickException(
            f"no known data files in {directory}; `classify-train data fetch` downloads them"
        )
    for check in checks:
        click.echo(f"{check.status:8} {check.path}: {check.detail}")
    failed = [check for check in checks if check.status == MISMATCH]
    if failed:
        raise click.ClickException(
            f"{len(failed)} of {len(checks)} files do not match their pinned digest; delete them and run "
            "`classify-train data fetch` to download them again"
        )
    click.echo(f"{len(checks)} files checked, none differs from its pin")
