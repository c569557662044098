"""Readers for the files ``classify score`` takes, as one stream of rows in input order (see rows.py),
one module per kind of format: arrays (IDX, .npy), images (PNG/JPEG folders), texts (JSON lines, text
lines) and tables (CSV, Parquet)."""

from __future__ import annotations

from pathlib import Path

from ...formats import FormatError
from .arrays import IdxImages, NpyImages, block_to_uint8, image_rows_shape, load_npy
from .images import IMAGE_SUFFIXES, PILLOW_MISSING, ImageFolder, load_image
from .rows import (
    BLOCK_ROWS,
    IMAGE,
    NPY_MAGIC,
    TEXT,
    InputRow,
    InputSource,
    MissingDependencyError,
    TableColumns,
    sniff,
)
from .tables import PYARROW_MISSING, CsvTable, ParquetTable, import_parquet
from .texts import JsonLinesTexts, TextLines

JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz")
TEXT_SUFFIXES = (".txt", ".txt.gz")
CSV_SUFFIXES = (".csv", ".csv.gz")
PARQUET_MAGIC = b"PAR1"
SUPPORTED = (
    "an IDX image file (gzipped or not), a .npy array, a folder of PNG/JPEG images, "
    "JSON lines (.jsonl, .jsonl.gz), plain text lines (.txt), CSV (.csv, .csv.gz) or Parquet (.parquet)"
)
# Inputs whose rows have named fields, so that --id-column can name some of them.
WITH_COLUMNS = (CsvTable, ParquetTable, JsonLinesTexts)

__all__ = [
    "BLOCK_ROWS",
    "IMAGE",
    "IMAGE_SUFFIXES",
    "NPY_MAGIC",
    "PILLOW_MISSING",
    "PYARROW_MISSING",
    "SUPPORTED",
    "TEXT",
    "CsvTable",
    "IdxImages",
    "ImageFolder",
    "InputRow",
    "InputSource",
    "JsonLinesTexts",
    "MissingDependencyError",
    "NpyImages",
    "ParquetTable",
    "TableColumns",
    "TextLines",
    "block_to_uint8",
    "image_rows_shape",
    "import_parquet",
    "load_image",
    "load_npy",
    "open_input",
    "sniff",
]


def open_input(path: str | Path, columns: TableColumns | None = None) -> InputSource:
    """Recognize the format of ``path`` (by content where the format has a signature) and check it.

    ``columns`` names the columns of table inputs (CSV, Parquet) and the fields of JSON lines.
    """
    path = Path(path)
    columns = columns or TableColumns()
    source = _open(path, columns)
    if columns.ids and not isinstance(source, WITH_COLUMNS):
        raise FormatError(path, "--id-column needs an input with named columns: CSV, Parquet or JSON lines")
    return source


def _open(path: Path, columns: TableColumns) -> InputSource:
    if path.is_dir():
        return ImageFolder(path)
    if not path.exists():
        raise FormatError(path, "no such file or directory")
    head = sniff(path)
    name = path.name.lower()
    if head.startswith(NPY_MAGIC) or name.endswith(".npy"):
        return NpyImages(path)
    if head.startswith(PARQUET_MAGIC) or name.endswith(".parquet"):
        return ParquetTable(path, columns)
    if head[:2] == b"\x00\x00" or "idx" in name or name.endswith(".ubyte"):
        return IdxImages(path)
    return _open_by_suffix(path, name, columns)


def _open_by_suffix(path: Path, name: str, columns: TableColumns) -> InputSource:
    """The line formats, which have no signature: JSON lines, CSV and plain text."""
    if name.endswith(JSONL_SUFFIXES):
        return JsonLinesTexts(path, columns)
    if name.endswith(CSV_SUFFIXES):
        return CsvTable(path, columns)
    if name.endswith(TEXT_SUFFIXES):
        return TextLines(path)
    raise FormatError(path, f"cannot tell the input format; expected {SUPPORTED}")
