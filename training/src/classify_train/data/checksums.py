"""sha256 digests of files, index arrays and data, recorded in model.json for reproducibility."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np

_CHUNK = 1 << 20


def source_name(path: Path) -> str:
    """How model.json names a source: by its file (or folder) name, as users know the downloads."""
    return path.resolve().name


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def files_sha256(paths: Iterable[Path], root: Path) -> str:
    """One digest for many files (an ``aclImdb/`` folder): over each relative path and its own digest, sorted
    by path so the answer does not depend on directory listing order."""
    digest = hashlib.sha256()
    for path in sorted(paths, key=lambda p: p.relative_to(root).as_posix()):
        digest.update(f"{path.relative_to(root).as_posix()}\0{file_sha256(path)}\n".encode())
    return digest.hexdigest()


def indices_sha256(indices: np.ndarray) -> str:
    """Digest of row indices as little-endian int64, the same on every platform."""
    return hashlib.sha256(np.asarray(indices, dtype="<i8").tobytes()).hexdigest()


def rows_sha256(inputs: np.ndarray | list[str], labels: np.ndarray) -> str:
    """Digest of the rows' content: image bytes (C order) or each text as UTF-8 followed by a NUL byte,
    then the labels as little-endian int64. Two splits with the same digest hold the same data."""
    digest = hashlib.sha256()
    if isinstance(inputs, np.ndarray):
        digest.update(np.ascontiguousarray(inputs).tobytes())
    else:
        for text in inputs:
            digest.update(text.encode("utf-8") + b"\0")
    digest.update(np.asarray(labels, dtype="<i8").tobytes())
    return digest.hexdigest()
