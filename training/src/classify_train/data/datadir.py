"""Where the data sets live: the ``--data-dir`` flag, else the ``CLASSIFY_DATA_DIR`` environment variable."""

from __future__ import annotations

import os
from pathlib import Path

from classify_train.data.dataset import DataError

DATA_DIR_ENV = "CLASSIFY_DATA_DIR"


def resolve_data_dir(flag: str | os.PathLike[str] | None) -> Path:
    """Return the data directory, the flag winning over the environment; raise DataError if neither works."""
    if flag:
        chosen, origin = Path(flag), "--data-dir"
    elif os.environ.get(DATA_DIR_ENV):
        chosen, origin = Path(os.environ[DATA_DIR_ENV]), DATA_DIR_ENV
    else:
        raise DataError(
            f"no data directory given: pass --data-dir DIR or set the {DATA_DIR_ENV} environment variable"
        )
    if not chosen.is_dir():
        raise DataError(f"data directory {chosen} (from {origin}) does not exist or is not a directory")
    return chosen
