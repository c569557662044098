"""True labels for scoring: reading a labels file and mapping what users write onto the model's classes.

Users write labels as class indices (IDX and .npy files, the IMDb ``label`` field) or as class names
("positive", or "7" for a digit); the model's label list from GetModelMetadata decides which is which.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..formats import FormatError, open_maybe_gzip, read_idx
from .inputs import NPY_MAGIC, InputRow, load_npy, sniff

UNLABELLED = -1  # the IMDb convention for reviews without a label


class LabelError(ValueError):
    """A label that names no class of the model."""


def read_labels(path: str | Path) -> list[Any]:
    """Labels in file order from an IDX labels file, a 1-D .npy array, or text with one label a line."""
    path = Path(path)
    if not path.is_file():
        raise FormatError(path, "no such file")
    head = sniff(path)
    if head.startswith(NPY_MAGIC):
        return array_labels(load_npy(path), path)
    if head[:2] == b"\x00\x00":
        return array_labels(read_idx(path), path)
    return text_labels(path)


def array_labels(array: np.ndarray, path: Path) -> list[Any]:
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise FormatError(path, f"labels must be one dimension (one per row); got shape {list(array.shape)}")
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.str_)):
        raise FormatError(path, f"labels must be integers or strings; got dtype {array.dtype}")
    return array.tolist()


def text_labels(path: Path) -> list[Any]:
    with open_maybe_gzip(path) as stream:
        try:
            text = stream.read().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FormatError(path, f"labels text is not UTF-8: {exc.reason}") from exc
    # Blank lines are skipped, as the text input reader skips them, so both stay aligned line for line.
    return [line.strip() for line in text.splitlines() if line.strip()]


class LabelMap:
    """Maps a label as written (index, index as text, or class name) to the model's class index."""

    def __init__(self, labels: Sequence[str]) -> None:
        self.labels = list(labels)
        self._by_name = {label: index for index, label in enumerate(self.labels)}

    def index_of(self, value: Any) -> int | None:
        """The class index of ``value``; None when it means "no label" (None or -1)."""
        if value is None:
            return None
        if isinstance(value, str):
            name = value.strip()
            if name in self._by_name:  # names first: for digits, "7" is the name of class 7 anyway
                return self._by_name[name]
            try:
                return self._checked_index(int(name))
            except ValueError:
                raise LabelError(f"unknown label {value!r}; the model's labels are {self._names()}") from None
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, int | np.integer) and not isinstance(value, bool):
            return self._checked_index(int(value))
        raise LabelError(f"a label must be a class index or name, got {value!r}")

    def _checked_index(self, index: int) -> int | None:
        if index == UNLABELLED:
            return None
        if not 0 <= index < len(self.labels):
            raise LabelError(
                f"label {index} is out of range: the model has {len(self.labels)} classes ({self._names()})"
            )
        return index

    def _names(self) -> str:
        shown = ", ".join(self.labels[:12])
        return shown + (", ..." if len(self.labels) > 12 else "")


def resolve_labels(
    rows: Iterable[InputRow], label_map: LabelMap, external: Sequence[Any] | None = None
) -> Iterator[InputRow]:
    """Set ``true_index`` of each row from ``external`` labels (by row index) or the row's own label.

    An unusable label found in the input itself makes that row bad; ``external`` labels are checked
    up front with ``check_labels``, since a wrong labels file is a mistake about the whole job.
    """
    for row in rows:
        raw = row.label
        if external is not None:
            raw = external[row.index] if row.index < len(external) else None
        if raw is None:
            yield row
            continue
        try:
            yield replace(row, true_index=label_map.index_of(raw))
        except LabelError as exc:
            yield row if row.error is not None else replace(row, error=f"bad label: {exc}")


def check_labels(labels: Sequence[Any], label_map: LabelMap, path: str | Path) -> None:
    """Raise FormatError at the first label of a labels file that names no class of the model."""
    for position, value in enumerate(labels):
        try:
            label_map.index_of(value)
        except LabelError as exc:
            raise FormatError(path, f"label #{position}: {exc}") from None
