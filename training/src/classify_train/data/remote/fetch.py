"""Make the splits a command needs present: download what is missing (into the user cache on its own, into
any folder when an operator runs ``classify-train data fetch``), and turn the IMDb archive into JSON lines."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from rich.console import Console

from classify_train.data.datadir import DATA_DIR_ENV, DataLocation
from classify_train.data.dataset import DataError
from classify_train.data.imdb import has_imdb_split
from classify_train.data.mnist import has_mnist_split
from classify_train.data.remote.download import UnreachableError, download
from classify_train.data.remote.imdb_archive import SPLITS as IMDB_SPLITS
from classify_train.data.remote.imdb_archive import convert_archive
from classify_train.data.remote.manifest import (
    IMDB_ARCHIVE,
    MANIFEST_ENV,
    MIRROR_ENV,
    PINNED,
    SPLIT_FILES,
    Manifest,
    dataset_of,
    load_manifest,
    with_mirror,
)

Need = tuple[str, str]  # (data set, split)
ALL_NEEDS: tuple[Need, ...] = tuple(SPLIT_FILES)


def manifest_for(mirror: str | None = None, manifest_path: Path | None = None) -> Manifest:
    """The pinned manifest, or the one in ``manifest_path``/``$CLASSIFY_DATA_MANIFEST``, with its URLs
    moved under ``mirror``/``$CLASSIFY_DATA_MIRROR`` when one is given."""
    path = manifest_path or (Path(os.environ[MANIFEST_ENV]) if os.environ.get(MANIFEST_ENV) else None)
    manifest = load_manifest(path) if path else PINNED
    return with_mirror(manifest, mirror or os.environ.get(MIRROR_ENV))


def has_split(directory: Path, need: Need) -> bool:
    dataset, split = need
    return has_mnist_split(directory, split) if dataset == "mnist" else has_imdb_split(directory, split)


def ensure_splits(
    location: DataLocation, needs: Iterable[Need], manifest: Manifest, *, console: Console | None = None
) -> Path:
    """Download the missing splits when the data directory is the user cache. A folder the user named is
    left as it is: the loader then says what it looked for, and ``data fetch`` fills it on request."""
    if location.is_cache:
        missing = [need for need in needs if not has_split(location.path, need)]
        for need in missing:
            try:
                fetch_split(location.path, need, manifest, console=console)
            except UnreachableError as exc:
                raise DataError(offline_message(location.path, need, manifest, exc)) from exc
    return location.path


def fetch_split(
    directory: Path, need: Need, manifest: Manifest, *, console: Console | None = None
) -> list[Path]:
    """Download the split's canonical files that are not there yet; for IMDb, convert the archive into the
    JSON lines of every split still missing. Returns the files written."""
    dataset, split = need
    if need not in SPLIT_FILES:
        raise DataError(f"{dataset} has no downloadable {split!r} split; choose one of {list(SPLIT_FILES)}")
    folder = directory / dataset
    written = []
    for name in SPLIT_FILES[need]:
        if not (folder / name).is_file():
            written.append(download(manifest[name], folder / name, console=console))
    if dataset == "imdb" and not has_imdb_split(directory, split):
        missing = tuple(s for s in IMDB_SPLITS if not has_imdb_split(directory, s))
        written.extend(convert_archive(folder / IMDB_ARCHIVE, folder, missing))
    return written


def offline_message(directory: Path, need: Need, manifest: Manifest, error: Exception) -> str:
    """One line: what is missing, why it could not be downloaded, and the three ways to provide it."""
    dataset, split = need
    names = ", ".join(SPLIT_FILES[need])
    return (
        f"no {dataset} {split} split in {directory} and downloading it failed: {error}. "
        f"Provide the data in one of three ways: --data-dir DIR or {DATA_DIR_ENV}=DIR (a folder holding "
        f"mnist/ and imdb/); --mirror URL or {MIRROR_ENV}=URL (a base URL under which {names} are found); "
        f"or copy {names} into {directory / dataset_of(SPLIT_FILES[need][0])}/"
    )
