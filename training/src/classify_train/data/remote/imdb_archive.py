"""Convert ``aclImdb_v1.tar.gz`` once into the JSON lines the IMDb loader reads first.

The layout is the data folder's (docs/training.md, Data): ``imdb_{train,test,unsup}.jsonl.gz``, one review
a line ``{"id", "rating", "label", "text"}``, negatives (id order) then positives (id order); ``id`` and
``rating`` come from the review's file name ``<id>_<rating>.txt``, the text is the file verbatim.
"""

from __future__ import annotations

import gzip
import json
import re
import tarfile
from pathlib import Path

from classify_train.data.dataset import DataError

# (split, folder inside aclImdb/, label) in the order the rows are written.
_FOLDERS = (
    ("train", "train/neg", 0),
    ("train", "train/pos", 1),
    ("test", "test/neg", 0),
    ("test", "test/pos", 1),
    ("unsup", "train/unsup", -1),
)
_MEMBER = re.compile(r"^(?:\./)?aclImdb/(train|test)/(neg|pos|unsup)/(\d+)_(\d+)\.txt$")
SPLITS = ("train", "test", "unsup")


def jsonl_path(imdb_dir: Path, split: str) -> Path:
    return imdb_dir / f"imdb_{split}.jsonl.gz"


def convert_archive(archive: Path, imdb_dir: Path, splits: tuple[str, ...] = SPLITS) -> list[Path]:
    """Write the given splits' JSON lines into ``imdb_dir``; return their paths."""
    reviews = _read_reviews(archive)
    written = []
    for split in splits:
        rows = [
            {"id": review_id, "rating": rating, "label": label, "text": text}
            for row_split, folder, label in _FOLDERS
            if row_split == split
            for review_id, rating, text in sorted(reviews.get(folder, []))
        ]
        if not rows:
            raise DataError(f"{archive}: no reviews under aclImdb/{split}/; is this aclImdb_v1.tar.gz?")
        written.append(_write_jsonl_gz(jsonl_path(imdb_dir, split), rows))
    return written


def _read_reviews(archive: Path) -> dict[str, list[tuple[int, int, str]]]:
    """Every review in the archive, by folder (``train/neg``, ...), in one pass over the stream."""
    reviews: dict[str, list[tuple[int, int, str]]] = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                match = _MEMBER.match(member.name)
                if not match or not member.isfile():
                    continue
                split, kind, review_id, rating = match.groups()
                stream = tar.extractfile(member)
                assert stream is not None  # a regular file always has a stream
                text = _decode(archive, member.name, stream.read())
                reviews.setdefault(f"{split}/{kind}", []).append((int(review_id), int(rating), text))
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(f"{archive}: not a readable .tar.gz archive ({exc})") from exc
    return reviews


def _decode(archive: Path, name: str, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{archive}: {name} is not UTF-8 (byte {exc.start})") from exc


def _write_jsonl_gz(path: Path, rows: list[dict[str, object]]) -> Path:
    # Written under a temporary name and renamed: an interrupted conversion never leaves a short file that
    # the loader would take for the whole split. mtime=0 makes the .gz bytes the same on every run.
    temporary = path.with_name(path.name + ".part")
    with temporary.open("wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as out:
        for row in rows:
            out.write((json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8"))
    temporary.replace(path)
    return path
