"""Where the data sets live: ``--data-dir``, else ``CLASSIFY_DATA_DIR``, else the user cache
(``${XDG_CACHE_HOME:-~/.cache}/classify/datasets``), the only one of the three that is filled by download."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from classify_train.data.dataset import DataError

DATA_DIR_ENV = "CLASSIFY_DATA_DIR"
FLAG = "--data-dir"
CACHE = "user cache"


@dataclass(frozen=True)
class DataLocation:
    """The data directory and which of the three sources chose it."""

    path: Path
    origin: str

    @property
    def is_cache(self) -> bool:
        return self.origin == CACHE


def user_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "classify" / "datasets"


def search_order(flag: str | os.PathLike[str] | None) -> list[tuple[str, Path | None]]:
    """The three sources in the order they are tried, each with its value (None when not set)."""
    env = os.environ.get(DATA_DIR_ENV)
    return [
        (FLAG, Path(flag) if flag else None),
        (DATA_DIR_ENV, Path(env) if env else None),
        (CACHE, user_cache_dir()),
    ]


def locate_data_dir(flag: str | os.PathLike[str] | None) -> DataLocation:
    """The first source that is set. A folder the user named must exist (a typo should not start a
    download into a new folder); the cache is created on demand."""
    origin, chosen = next((origin, path) for origin, path in search_order(flag) if path is not None)
    assert chosen is not None  # the cache always has a value
    if origin != CACHE and not chosen.is_dir():
        raise DataError(f"data directory {chosen} (from {origin}) does not exist or is not a directory")
    return DataLocation(chosen, origin)


def resolve_data_dir(flag: str | os.PathLike[str] | None) -> Path:
    """The data directory's path, as :func:`locate_data_dir` chooses it."""
    return locate_data_dir(flag).path
