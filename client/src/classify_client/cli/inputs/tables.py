"""Tables: CSV (stdlib, streamed) and Parquet (pyarrow, streamed by record batch).

A table holds either a text column or images: one ``image`` column (Parquet: PNG/JPEG bytes, or 784
pixel values per row) or the MNIST-as-CSV layout ``pixel0`` .. ``pixel783`` (both formats). A ``label``
column, when present, gives the true labels; ``--id-column`` columns are carried into the output.
"""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...formats import FormatError, open_maybe_gzip
from ...wire.arrays import IMAGE_PIXELS, IMAGE_SIDE
from .images import decode_image_bytes, import_pillow
from .rows import BLOCK_ROWS, IMAGE, TEXT, InputRow, MissingDependencyError, TableColumns

PYARROW_MISSING = "reading or writing Parquet needs pyarrow: pip install 'classify-client[parquet]'"
# A review can be long; the csv module's default limit (128 KiB a field) is about lines gone wrong.
csv.field_size_limit(min(sys.maxsize, 1 << 26))


def import_parquet() -> Any:
    """pyarrow.parquet, or MissingDependencyError naming the extra that installs it."""
    try:
        from pyarrow import parquet
    except ImportError as exc:
        raise MissingDependencyError(PYARROW_MISSING) from exc
    return parquet


def table_kind(names: Sequence[str], columns: TableColumns, path: Path, *, image_column: bool) -> str:
    """TEXT or IMAGE from a table's column names; FormatError saying what was expected otherwise."""
    missing = [name for name in columns.ids if name not in names]
    if missing:
        raise FormatError(path, f"no column {missing[0]!r} for --id-column; the columns are {shown(names)}")
    if columns.text in names:
        return TEXT
    if image_column and columns.image in names:
        return IMAGE
    if all(name in names for name in columns.pixel_names()):
        return IMAGE
    image = f"an {columns.image!r} column or " if image_column else ""
    raise FormatError(
        path,
        f"expected a {columns.text!r} column, {image}the MNIST-as-CSV columns "
        f"{columns.pixel_prefix}0..{columns.pixel_prefix}783; the columns are {shown(names)}",
    )


def shown(names: Sequence[str]) -> str:
    return ", ".join(names[:12]) + (f", ... ({len(names)} in all)" if len(names) > 12 else "")


def pixels_to_uint8(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 784) numbers as (N, 28, 28) uint8, and a per-row flag for values not whole numbers in 0-255."""
    values = np.asarray(values, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        bad = ~(np.isfinite(values) & (values >= 0) & (values <= 255) & (values == np.round(values))).all(
            axis=1
        )
    pixels = np.where(bad[:, None], 0, values).astype(np.uint8)
    return pixels.reshape(-1, IMAGE_SIDE, IMAGE_SIDE), bad


PIXEL_ERROR = "pixel values must be whole numbers from 0 to 255, 784 of them"


class CsvTable:
    """A CSV file with a header (gzipped or not): a text column, or label,pixel0..pixel783 (Kaggle)."""

    count = None

    def __init__(self, path: Path, columns: TableColumns | None = None) -> None:
        self.path = path
        self._columns = columns or TableColumns()
        with self._reader() as (reader, _):
            self._header = next(reader, None)
        if not self._header:
            raise FormatError(path, "empty CSV file: expected a header line naming the columns")
        self.kind = table_kind(self._header, self._columns, path, image_column=False)

    def _reader(self) -> Any:
        return _CsvReader(self.path)

    def rows(self) -> Iterator[InputRow]:
        position = {name: i for i, name in enumerate(self._header)}
        ids = [position[name] for name in self._columns.ids]
        label = position.get(self._columns.label)
        if self.kind == TEXT:
            wanted = [position[self._columns.text]]
        else:
            wanted = [position[name] for name in self._columns.pixel_names()]
        needed = max([*wanted, *ids, -1 if label is None else label]) + 1
        index = 0
        with self._reader() as (reader, name):
            next(reader)
            while True:
                try:
                    fields = next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:  # a NUL byte, an unclosed quote: this line only
                    yield InputRow(index, f"{name}:{reader.line_num}", error=f"bad CSV line: {exc}")
                    index += 1
                    continue
                if not fields:
                    continue  # blank lines are no rows, as in the text-lines reader
                source = f"{name}:{reader.line_num}"
                if len(fields) < needed:
                    error = f"line has {len(fields)} fields, the header has {len(self._header)}"
                    yield InputRow(index, source, error=error)
                else:
                    row_ids = tuple(fields[i] for i in ids)
                    raw_label = fields[label] if label is not None and fields[label] != "" else None
                    yield self._row(index, source, [fields[i] for i in wanted], raw_label, row_ids)
                index += 1

    def _row(self, index: int, source: str, values: list[str], label: Any, ids: tuple[Any, ...]) -> InputRow:
        if self.kind == TEXT:
            text = values[0]
            if not text.strip():
                return InputRow(index, source, label=label, error="empty text", ids=ids)
            return InputRow(index, source, text=text, label=label, ids=ids)
        try:
            pixels, bad = pixels_to_uint8(np.array([values], dtype=np.float64))
        except ValueError:
            return InputRow(index, source, label=label, error=PIXEL_ERROR, ids=ids)
        if bad[0]:
            return InputRow(index, source, label=label, error=PIXEL_ERROR, ids=ids)
        return InputRow(index, source, image=pixels[0], label=label, ids=ids)


class _CsvReader:
    """A csv.reader over a (possibly gzipped) UTF-8 file; bad bytes become U+FFFD, not a stopped job."""

    def __init__(self, path: Path) -> None:
        self._path = path

    def __enter__(self) -> tuple[Any, str]:
        self._raw = open_maybe_gzip(self._path)
        self._text = io.TextIOWrapper(self._raw, encoding="utf-8", errors="replace", newline="")
        return csv.reader(self._text), self._path.name

    def __exit__(self, *exc: object) -> None:
        self._text.close()


class ParquetTable:
    """A Parquet file: a text column, an image column (encoded bytes or 784 values), or pixel columns."""

    def __init__(self, path: Path, columns: TableColumns | None = None) -> None:
        parquet = import_parquet()
        import pyarrow as pa

        self.path = path
        self._columns = columns or TableColumns()
        try:
            self._file = parquet.ParquetFile(path)
        except (pa.ArrowException, OSError) as exc:
            raise FormatError(path, f"not a readable Parquet file: {exc}") from None
        names = self._file.schema_arrow.names
        self.kind = table_kind(names, self._columns, path, image_column=True)
        self.count = self._file.metadata.num_rows
        self._image_module: Any = None
        self._layout = self._image_layout(names) if self.kind == IMAGE else "text"

    def _image_layout(self, names: list[str]) -> str:
        import pyarrow as pa

        if self._columns.image not in names:
            return "pixel-columns"
        kind = self._file.schema_arrow.field(self._columns.image).type
        if pa.types.is_struct(kind) and kind.get_field_index("bytes") >= 0:
            kind = kind.field("bytes").type  # the Hugging Face datasets image feature: {bytes, path}
        if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
            self._image_module = import_pillow()
            return "encoded"
        if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
            return "values"
        raise FormatError(
            self.path,
            f"column {self._columns.image!r} is {kind}; expected PNG/JPEG bytes or lists of 784 pixel values",
        )

    def rows(self) -> Iterator[InputRow]:
        c = self._columns
        wanted = {"text": [c.text], "pixel-columns": c.pixel_names()}.get(self._layout, [c.image])
        names = self._file.schema_arrow.names
        label = [c.label] if c.label in names else []
        index = 0
        for batch in self._file.iter_batches(batch_size=BLOCK_ROWS, columns=[*wanted, *label, *c.ids]):
            size = batch.num_rows
            labels = batch.column(c.label).to_pylist() if label else [None] * size
            ids = list(zip(*(batch.column(name).to_pylist() for name in c.ids), strict=True)) or [()] * size
            for offset, (value, error) in enumerate(self._items(batch, wanted)):
                source = f"{self.path.name}#{index}"
                common = {"label": labels[offset], "ids": tuple(ids[offset])}
                if error is not None:
                    yield InputRow(index, source, error=error, **common)
                elif self.kind == TEXT:
                    yield InputRow(index, source, text=value, **common)
                else:
                    yield InputRow(index, source, image=value, **common)
                index += 1

    def _items(self, batch: Any, wanted: list[str]) -> Iterator[tuple[Any, str | None]]:
        """(text or image, None) or (None, error) for each row of a record batch."""
        if self._layout == "text":
            for text in batch.column(wanted[0]).to_pylist():
                if not isinstance(text, str):
                    yield None, f"missing or non-string {wanted[0]!r} value"
                else:
                    yield (text, None) if text.strip() else (None, "empty text")
        elif self._layout == "encoded":
            column = batch.column(wanted[0])
            if hasattr(column.type, "get_field_index"):
                column = column.field("bytes")
            for data in column.to_pylist():
                yield self._decoded(data)
        else:
            yield from self._pixel_items(batch, wanted)

    def _decoded(self, data: bytes | None) -> tuple[Any, str | None]:
        if not data:
            return None, "no image bytes"
        try:
            return decode_image_bytes(self._image_module, data), None
        except Exception as exc:  # a corrupt file makes Pillow raise nearly anything
            return None, f"cannot read image: {exc}"

    def _pixel_items(self, batch: Any, wanted: list[str]) -> Iterator[tuple[Any, str | None]]:
        if self._layout == "pixel-columns":
            matrix = np.column_stack(
                [batch.column(n).to_numpy(zero_copy_only=False).astype(np.float64) for n in wanted]
            )
            values: list[Any] = list(matrix)
        else:
            values = batch.column(wanted[0]).to_pylist()
        for value in values:
            if value is None or len(value) != IMAGE_PIXELS:
                yield None, PIXEL_ERROR
                continue
            try:
                pixels, bad = pixels_to_uint8(np.array([value], dtype=np.float64))
            except (TypeError, ValueError):
                bad, pixels = np.array([True]), None
            yield (None, PIXEL_ERROR) if bad[0] or pixels is None else (pixels[0], None)
