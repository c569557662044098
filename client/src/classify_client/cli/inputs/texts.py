"""Texts: JSON lines with a ``text`` field, and plain text lines."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ...formats import iter_jsonl, open_maybe_gzip
from .rows import TEXT, InputRow, TableColumns


class JsonLinesTexts:
    """JSON lines with a ``text`` field and an optional ``label`` (index, label name, or -1 for none);
    the field names are those of ``columns``, whose ``ids`` fields are carried (null when absent)."""

    kind = TEXT
    count = None

    def __init__(self, path: Path, columns: TableColumns | None = None) -> None:
        self.path = path
        self._columns = columns or TableColumns()

    def rows(self) -> Iterator[InputRow]:
        text_field, label_field = self._columns.text, self._columns.label
        for index, line in enumerate(iter_jsonl(self.path)):
            source = f"{self.path.name}:{line.line}"
            if line.error is not None or line.record is None:
                ids = (None,) * len(self._columns.ids)
                yield InputRow(index, source, error=line.error or "not a JSON object", ids=ids)
                continue
            text = line.record.get(text_field)
            label = line.record.get(label_field)
            ids = tuple(line.record.get(name) for name in self._columns.ids)
            if not isinstance(text, str):
                error = f"missing or non-string {text_field!r} field"
                yield InputRow(index, source, label=label, error=error, ids=ids)
            elif not text.strip():
                yield InputRow(index, source, label=label, error="empty text", ids=ids)
            else:
                yield InputRow(index, source, text=text, label=label, ids=ids)


class TextLines:
    """Plain text, one item per non-empty line (gzipped or not)."""

    kind = TEXT
    count = None

    def __init__(self, path: Path) -> None:
        self.path = path

    def rows(self) -> Iterator[InputRow]:
        index = 0
        with open_maybe_gzip(self.path) as stream:
            # Lines are decoded one at a time so that one bad byte costs one row, not the rest of the file.
            for number, raw in enumerate(stream, start=1):
                source = f"{self.path.name}:{number}"
                try:
                    text = raw.decode("utf-8").rstrip("\r\n")
                except UnicodeDecodeError as exc:
                    yield InputRow(index, source, error=f"invalid UTF-8: {exc.reason}")
                    index += 1
                    continue
                if text.strip():
                    yield InputRow(index, source, text=text)
                    index += 1
