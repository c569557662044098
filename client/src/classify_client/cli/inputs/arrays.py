"""Image arrays: IDX files (gzipped or not) and .npy arrays, streamed in blocks."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ...formats import FormatError, open_maybe_gzip
from ...wire.arrays import IMAGE_PIXELS, IMAGE_SIDE
from .rows import BLOCK_ROWS, IMAGE, InputRow, sniff


def image_rows_shape(shape: tuple[int, ...], path: Path) -> int:
    """The number of images in an array of ``shape``, which must be one of the accepted image layouts."""
    if len(shape) == 1:
        raise FormatError(path, f"holds {shape[0]} values in one dimension (labels?), not images")
    if shape[1:] not in ((IMAGE_SIDE, IMAGE_SIDE), (IMAGE_PIXELS,), (IMAGE_SIDE, IMAGE_SIDE, 1)):
        raise FormatError(path, f"images must be (N, 28, 28), (N, 784) or (N, 28, 28, 1); got {list(shape)}")
    return shape[0]


class IdxImages:
    """An IDX uint8 image file, streamed; its size is checked against the header before any row.

    A file cut short (an interrupted download, gzip included) still yields one row per image its header
    declares: the complete images are scored, the cut and missing ones are rows with an error, so the
    output lines up with the labels file and says exactly which rows are missing.
    """

    kind = IMAGE

    def __init__(self, path: Path) -> None:
        self.path = path
        with open_maybe_gzip(path) as stream:
            self._shape, self._header_bytes = read_idx_image_header(stream, path)
            payload, stream_error = count_bytes(stream)
        self.count = image_rows_shape(self._shape, path)
        expected = self.count * IMAGE_PIXELS
        if payload > expected:
            raise FormatError(
                path,
                f"IDX payload has {payload} bytes but shape {list(self._shape)} needs {expected} "
                "(trailing bytes)",
            )
        self.complete = payload // IMAGE_PIXELS
        self.damage: str | None = None
        if payload < expected:
            cause = f"corrupt gzip stream ({stream_error})" if stream_error else "file truncated"
            self.damage = (
                f"{cause}: the IDX payload ends after {payload} of {expected} bytes, "
                f"inside image {self.complete}"
                if payload % IMAGE_PIXELS
                else f"{cause}: the IDX payload ends after {payload} of {expected} bytes, "
                f"after image {self.complete - 1}"
            )

    def rows(self) -> Iterator[InputRow]:
        with open_maybe_gzip(self.path) as stream:
            stream.read(self._header_bytes)
            for start in range(0, self.complete, BLOCK_ROWS):
                take = min(BLOCK_ROWS, self.complete - start)
                block = np.frombuffer(read_exactly(stream, take * IMAGE_PIXELS), dtype=np.uint8)
                block = block.reshape(take, IMAGE_SIDE, IMAGE_SIDE)
                for offset in range(take):
                    index = start + offset
                    yield InputRow(index, f"{self.path.name}#{index}", image=block[offset])
        for index in range(self.complete, self.count):
            yield InputRow(index, f"{self.path.name}#{index}", error=f"image missing: {self.damage}")


def read_idx_image_header(stream: io.BufferedIOBase | Any, path: Path) -> tuple[tuple[int, ...], int]:
    """Shape and header length of an IDX file of uint8 values, read from the start of ``stream``."""
    magic = stream.read(4)
    if len(magic) < 4 or magic[:2] != b"\x00\x00":
        raise FormatError(path, "not an IDX file: expected a magic number starting with two zero bytes")
    if magic[2] != 0x08:
        raise FormatError(path, f"IDX images must be unsigned bytes (type 0x08), found type 0x{magic[2]:02x}")
    ndim = magic[3]
    dims = stream.read(4 * ndim)
    if ndim == 0 or len(dims) < 4 * ndim:
        raise FormatError(path, f"truncated IDX header: {ndim} dimensions need {4 + 4 * ndim} bytes")
    shape = tuple(int(d) for d in np.frombuffer(dims, dtype=">u4"))
    return shape, 4 + 4 * ndim


def read_exactly(stream: Any, size: int) -> bytes:
    """``size`` bytes that count_bytes saw, read the same way (read1) so a cut later on cannot lose them."""
    parts = []
    while size > 0 and (part := stream.read1(size)):
        parts.append(part)
        size -= len(part)
    return b"".join(parts)


def count_bytes(stream: Any) -> tuple[int, str | None]:
    """Bytes readable from a (possibly gzip) stream, read in blocks so that memory stays bounded, and
    the error that stopped reading early (a cut or corrupt gzip stream), if any."""
    total = 0
    try:
        # read1, not read: a buffered read that hits a cut gzip stream drops everything it gathered.
        while block := stream.read1(1 << 16):
            total += len(block)
    except (OSError, EOFError) as exc:
        # gzip gives up on the whole block it was decoding: the bytes counted so far are the ones it
        # delivered, and rows() reads no further than that.
        return total, str(exc)
    return total, None


class NpyImages:
    """A .npy array of uint8 images, or floats in [0, 1]; memory-mapped when not compressed."""

    kind = IMAGE

    def __init__(self, path: Path) -> None:
        self.path = path
        self._array = load_npy(path)
        self.count = image_rows_shape(self._array.shape, path)
        dtype = self._array.dtype
        if not (dtype == np.uint8 or np.issubdtype(dtype, np.floating)):
            raise FormatError(path, f"images must be uint8 (0-255) or floats in [0, 1]; got dtype {dtype}")

    def rows(self) -> Iterator[InputRow]:
        for start in range(0, self.count, BLOCK_ROWS):
            block = np.asarray(self._array[start : start + BLOCK_ROWS]).reshape(-1, IMAGE_SIDE, IMAGE_SIDE)
            pixels, bad = block_to_uint8(block)
            for offset in range(len(block)):
                index = start + offset
                source = f"{self.path.name}#{index}"
                if bad[offset]:
                    yield InputRow(index, source, error="float pixels must be finite and within [0, 1]")
                else:
                    yield InputRow(index, source, image=pixels[offset])


def load_npy(path: Path) -> np.ndarray:
    try:
        if sniff(path, 2) == b"\x1f\x8b":  # gzip cannot be memory-mapped: decompress into memory
            with open_maybe_gzip(path) as stream:
                return np.load(io.BytesIO(stream.read()), allow_pickle=False)
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise FormatError(path, f"not a readable .npy array: {exc}") from exc


def block_to_uint8(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint8 pixels of a block and a per-image flag for float images outside [0, 1]."""
    if block.dtype == np.uint8:
        return block, np.zeros(len(block), dtype=bool)
    flat = block.reshape(len(block), -1)
    with np.errstate(invalid="ignore"):
        bad = ~(np.isfinite(flat) & (flat >= 0.0) & (flat <= 1.0)).all(axis=1)
    # Round, not truncate, as the client library does; bad rows are zeroed and never sent.
    pixels = np.rint(np.where(bad[:, None], 0.0, flat) * 255.0).astype(np.uint8)
    return pixels.reshape(block.shape), bad
