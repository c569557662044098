"""What every reader of ``classify score`` produces: rows in input order, and the names they share.

Whole-file problems (unreadable, not the format it looks like) raise FormatError before any row is
produced, so the CLI can refuse the job up front. Problems of one row (a corrupt PNG, a bad JSON line,
an empty text, a CSV line with a pixel out of range) travel as rows with ``error`` set, so the job
reports them by position, scores the rest, and the output still has one row per input row.
Rows are produced lazily in blocks: a file far larger than memory streams through.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ...formats import FormatError, open_maybe_gzip

IMAGE = "image"
TEXT = "text"
NPY_MAGIC = b"\x93NUMPY"
# Rows decoded at once from an array or table file: large enough for fast numpy, small enough to stay
# bounded.
BLOCK_ROWS = 4096


class MissingDependencyError(RuntimeError):
    """An optional extra is needed for this input (Pillow for images, pyarrow for Parquet)."""


@dataclass(frozen=True)
class InputRow:
    """One item to score: exactly one of ``image`` / ``text`` unless ``error`` says why it is unusable.

    ``label`` is a label found in the input itself (the ``label`` field of a JSON line or column of a
    table), as written; ``true_index`` is the model's class index for the row's true label, once resolved
    (see labels.py). ``ids`` are the values of the ``--id-column`` columns, carried into the output.
    """

    index: int
    source: str
    image: Any = None  # np.ndarray (28, 28) of uint8
    text: str | None = None
    label: Any = None
    error: str | None = None
    true_index: int | None = None
    ids: tuple[Any, ...] = ()


class InputSource(Protocol):
    path: Path
    kind: str  # IMAGE or TEXT
    count: int | None  # rows, when known without reading everything

    def rows(self) -> Iterator[InputRow]: ...


@dataclass(frozen=True)
class TableColumns:
    """Which columns of a table input (CSV, Parquet; fields of JSON lines) hold what.

    An image table has either one ``image`` column (PNG/JPEG bytes or 784 values) or the MNIST-as-CSV
    layout: ``pixel0`` .. ``pixel783`` (``pixel_prefix`` followed by 0-783), as the Kaggle digit files.
    """

    text: str = "text"
    image: str = "image"
    label: str = "label"
    pixel_prefix: str = "pixel"
    ids: tuple[str, ...] = ()

    def pixel_names(self) -> list[str]:
        return [f"{self.pixel_prefix}{i}" for i in range(784)]


def sniff(path: Path, size: int = 8) -> bytes:
    """The first bytes of a file after decompression, to recognize formats by their magic numbers."""
    with open_maybe_gzip(path) as stream:
        try:
            return stream.read(size)
        except (OSError, EOFError) as exc:
            raise FormatError(path, f"corrupt gzip stream: {exc}") from exc
