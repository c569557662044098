"""Parquet output of ``classify score``, resumable like the line formats.

A Parquet file is readable only once its footer is written, and cannot be appended to. So the job
writes its rows to a JSON lines journal beside the output (``NAME.parquet.journal``, every score at
full precision, flushed per batch as the other formats are), and turns the journal into the Parquet
file when the job ends. A killed job leaves the journal, which ``--resume`` carries on; resuming after
a finished job turns its Parquet file back into a journal first.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from .inputs import import_parquet

# Rows a Parquet row group holds when the journal is converted: bounded memory for any job size.
CHUNK_ROWS = 65_536


def journal_path(path: Path) -> Path:
    return path.with_name(path.name + ".journal")


def result_schema(id_types: dict[str, Any]) -> Any:
    import pyarrow as pa

    top_k = pa.list_(pa.struct([("index", pa.int64()), ("label", pa.string()), ("score", pa.float64())]))
    fixed = [
        ("index", pa.int64()),
        ("source", pa.string()),
        ("label", pa.string()),
        ("score", pa.float64()),
        ("top_k", top_k),
        ("true_label", pa.string()),
        ("correct", pa.bool_()),
        ("error", pa.string()),
    ]
    return pa.schema(fixed + list(id_types.items()))


@contextmanager
def open_parquet_writer(
    path: Path, *, append: bool, id_columns: tuple[str, ...], journal_writer: Callable[[IO[str]], Any]
) -> Iterator[Any]:
    """The writer ``journal_writer`` makes over the journal (outputs.py's JSON lines writer); the
    Parquet file once the block ends without an exception."""
    import_parquet()  # before any row is scored: a missing extra is a whole-job error
    journal = journal_path(path)
    with journal.open("a" if append else "w", encoding="utf-8") as stream:
        yield journal_writer(stream)
    # Reached only when the job ended normally; a failed job keeps its journal for --resume.
    journal_to_parquet(journal, path, id_columns)
    journal.unlink()


def journal_records(journal: Path) -> Iterator[dict[str, Any]]:
    with journal.open(encoding="utf-8") as stream:
        for line in stream:
            yield json.loads(line)


def id_column_types(journal: Path, id_columns: tuple[str, ...]) -> dict[str, Any]:
    """An Arrow type per id column from the values it holds: int, float, bool or else string."""
    import pyarrow as pa

    seen: dict[str, set[type]] = {name: set() for name in id_columns}
    for record in journal_records(journal):
        for name in id_columns:
            if record.get(name) is not None:
                seen[name].add(type(record[name]))
    by_type = {int: pa.int64(), float: pa.float64(), bool: pa.bool_(), str: pa.string()}
    types = {}
    for name, kinds in seen.items():
        single = {float} if kinds == {int, float} else kinds  # JSON writes 2.0 as 2.0 but 2 as int
        kind = next(iter(single)) if len(single) == 1 else str
        types[name] = by_type.get(kind, pa.string())
    return types


def journal_to_parquet(journal: Path, path: Path, id_columns: tuple[str, ...]) -> None:
    import pyarrow as pa

    parquet = import_parquet()
    schema = result_schema(id_column_types(journal, id_columns))
    text_ids = [name for name in id_columns if schema.field(name).type == pa.string()]
    partial = path.with_name(path.name + ".writing")
    with parquet.ParquetWriter(partial, schema) as writer:
        chunk: list[dict[str, Any]] = []
        written = 0
        for record in journal_records(journal):
            for name in text_ids:  # a column of mixed types is kept as text
                if record.get(name) is not None:
                    record[name] = str(record[name])
            chunk.append(record)
            if len(chunk) == CHUNK_ROWS:
                writer.write_table(pa.Table.from_pylist(chunk, schema=schema))
                written += len(chunk)
                chunk = []
        if chunk or not written:  # an empty job still writes a file with the schema
            writer.write_table(pa.Table.from_pylist(chunk, schema=schema))
    os.replace(partial, path)  # a reader never sees a half-written Parquet file


def parquet_to_journal(path: Path, journal: Path, columns: tuple[str, ...]) -> None:
    """Rewrite a finished Parquet output as a journal, so that a resumed job can append to it."""
    parquet = import_parquet()
    table = parquet.read_table(path)
    missing = [name for name in columns if name not in table.column_names]
    if missing:
        raise ValueError(f"{path}: not an output of classify score (no column {missing[0]!r})")
    with journal.open("w", encoding="utf-8") as stream:
        for batch in table.to_batches(CHUNK_ROWS):
            for record in batch.to_pylist():
                stream.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
