"""Readers and writers for the data formats users of the course's data sets have on disk.

Shared by the client CLI (scoring files) and the training package (loading data sets), so both read the
same bytes the same way. Only numpy and the standard library: the client must stay free of TensorFlow.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

GZIP_MAGIC = b"\x1f\x8b"

# IDX type codes (LeCun's format): the third byte of the magic number.
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IDX_CODES = {dtype: code for code, dtype in _IDX_DTYPES.items()}


class FormatError(ValueError):
    """A file is not in the format it claims to be; the message says where and what was expected."""

    def __init__(self, path: str | Path, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = str(path)
        self.detail = message


def open_maybe_gzip(path: str | Path) -> IO[bytes]:
    """Open a file for reading bytes, decompressing it when it starts with the gzip magic number.

    The magic number decides, not the suffix: users rename files, and MNIST mirrors ship both ways.
    """
    path = Path(path)
    try:
        raw = path.open("rb")
    except OSError as exc:
        raise FormatError(path, f"cannot open: {exc.strerror or exc}") from exc
    head = raw.read(2)
    raw.seek(0)
    if head == GZIP_MAGIC:
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    return raw


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (gzipped or not) into an array of its stored shape and native dtype."""
    with open_maybe_gzip(path) as stream:
        try:
            data = stream.read()
        except (OSError, EOFError) as exc:
            raise FormatError(path, f"corrupt gzip stream: {exc}") from exc
    return parse_idx(data, path)


def parse_idx(data: bytes, path: str | Path = "<bytes>") -> np.ndarray:
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise FormatError(path, "not an IDX file: expected a magic number starting with two zero bytes")
    code, ndim = data[2], data[3]
    if code not in _IDX_DTYPES:
        raise FormatError(path, f"unknown IDX type code 0x{code:02x}; expected one of 0x08-0x0e")
    if ndim == 0:
        raise FormatError(path, "IDX file declares zero dimensions")
    header_end = 4 + 4 * ndim
    if len(data) < header_end:
        raise FormatError(path, f"truncated IDX header: {ndim} dimensions need {header_end} bytes")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    body = len(data) - header_end
    if body != expected:
        raise FormatError(
            path,
            f"IDX payload has {body} bytes but shape {list(shape)} of {dtype.name} needs {expected}"
            + (" (file truncated?)" if body < expected else " (trailing bytes)"),
        )
    array = np.frombuffer(data, dtype=dtype, offset=header_end).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=True)


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write an array as IDX; gzip-compressed when the path ends in .gz."""
    array = np.asarray(array)
    big_endian = array.dtype.newbyteorder(">") if array.dtype.itemsize > 1 else array.dtype
    code = _IDX_CODES.get(np.dtype(big_endian))
    if code is None:
        raise ValueError(f"IDX cannot store dtype {array.dtype}")
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    payload = header + np.ascontiguousarray(array, dtype=big_endian).tobytes()
    path = Path(path)
    if path.suffix == ".gz":
        # mtime=0 keeps the bytes (and so their checksum) the same for the same array; level 6 is 13x
        # faster than the default 9 on MNIST for 2% more bytes.
        with path.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, compresslevel=6) as gz:
            gz.write(payload)
    else:
        path.write_bytes(payload)


@dataclass(frozen=True)
class JsonLine:
    """One line of a JSON lines file: its 1-based line number and either the object or why it is bad."""

    line: int
    record: dict[str, Any] | None
    error: str | None = None


def iter_jsonl(path: str | Path) -> Iterator[JsonLine]:
    """Yield every non-blank line of a JSON lines file (gzipped or not), bad lines included as errors.

    Bad lines are yielded, not raised, so a scoring job can report them by position and go on; a caller
    that wants strictness raises on the first ``error``. Lines are decoded one at a time, so a bad byte
    costs its own line only; a corrupt gzip stream ends the file with one error at the line it hit.
    """
    with open_maybe_gzip(path) as raw:
        number = 0
        while True:
            try:
                line = raw.readline()
            except (OSError, EOFError) as exc:
                yield JsonLine(
                    number + 1, None, f"corrupt gzip stream, the rest of the file is unreadable: {exc}"
                )
                return
            if not line:
                return
            number += 1
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield JsonLine(number, None, f"invalid UTF-8 at byte {exc.start}: {exc.reason}")
                continue
            if not text.strip():
                continue
            yield parse_json_line(number, text)


def parse_json_line(number: int, line: str) -> JsonLine:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        return JsonLine(number, None, f"invalid JSON at column {exc.colno}: {exc.msg}")
    if not isinstance(record, dict):
        return JsonLine(number, None, f"expected a JSON object, got {type(record).__name__}")
    return JsonLine(number, record)


def write_jsonl(path: str | Path, records: Iterable[dict[str, Any]]) -> int:
    """Write records as JSON lines (gzip when the path ends in .gz); returns how many were written."""
    path = Path(path)
    count = 0
    with path.open("wb") as raw:
        stream: IO[bytes] = gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) if path.suffix == ".gz" else raw
        try:
            for record in records:
                stream.write(json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n")
                count += 1
        finally:
            if stream is not raw:
                stream.close()
    return count
