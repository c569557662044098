"""Version directories of a model repository, ``REPO/NAME/<integer>/``, and how a new one appears.

No TensorFlow here: the CLI checks for existing versions (``all --if-empty``) without loading it.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from classify_train.errors import ExportError
from classify_train.metadata import write_model_json

# Work in progress lives in a dot-directory beside the versions: servers skip non-integer names.
STAGING_PREFIX = ".staging-"
_PUBLISH_ATTEMPTS = 5


def existing_versions(model_dir: Path) -> list[int]:
    """Integer-named subdirectories, ascending. Anything else (``.staging-*``, notes) is not a version."""
    if not model_dir.is_dir():
        return []
    return sorted(
        int(entry.name) for entry in model_dir.iterdir() if entry.is_dir() and _is_version_name(entry.name)
    )


def next_version(model_dir: Path) -> int:
    """One more than the highest existing version; 1 for a new model.

    Counts every entry with a version name, files too: a stray file ``3`` would make ``3`` unclaimable.
    """
    if not model_dir.is_dir():
        return 1
    taken = [int(entry.name) for entry in model_dir.iterdir() if _is_version_name(entry.name)]
    return max(taken, default=0) + 1


def _is_version_name(name: str) -> bool:
    # "007" would parse but collide with "7"; servers and users expect the canonical spelling only.
    return name.isdigit() and name.isascii() and str(int(name)) == name


def publish(staging: Path, model_dir: Path, document_for: Callable[[int], dict[str, Any]]) -> Path:
    """Write model.json and rename the staging directory to the next free version number.

    Two exporters racing for the same number: the loser's rename fails (the target is a non-empty
    directory), and it retries with the next number, rewriting model.json to match.
    """
    for _ in range(_PUBLISH_ATTEMPTS):
        version = next_version(model_dir)
        write_model_json(staging, document_for(version))
        target = model_dir / str(version)
        if target.exists():  # rename(2) would silently replace an empty directory of that name
            continue
        try:
            os.rename(staging, target)
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            continue
        return target
    raise ExportError(
        f"could not claim a new version directory in {model_dir} after {_PUBLISH_ATTEMPTS} attempts"
    )
