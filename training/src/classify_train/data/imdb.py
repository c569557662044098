"""IMDb movie reviews from JSON lines (``imdb_{split}.jsonl.gz``) or the original ``aclImdb/`` folders."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from classify_client.formats import FormatError, iter_jsonl
from classify_train.data.checksums import file_sha256, files_sha256, source_name
from classify_train.data.dataset import DataError, Dataset, Split

LABEL_NAMES = ("negative", "positive")
UNLABELLED = -1
_SPLITS = ("train", "test", "unsup")
# aclImdb keeps unlabelled reviews in train/unsup; the labelled splits have neg/ then pos/.
_ACL_FOLDERS: dict[str, list[tuple[str, int]]] = {
    "train": [("train/neg", 0), ("train/pos", 1)],
    "test": [("test/neg", 0), ("test/pos", 1)],
    "unsup": [("train/unsup", UNLABELLED)],
}
_ACL_FILE_NAME = re.compile(r"^(\d+)_(\d+)\.txt$")  # <id>_<rating>.txt


def load_imdb(data_dir: Path, split: Split = "train") -> Dataset:
    """Load one IMDb split from ``data_dir`` or ``data_dir/imdb``: JSON lines first, else ``aclImdb/``."""
    if split not in _SPLITS:
        raise DataError(f"IMDb has no {split!r} split; choose one of {list(_SPLITS)}")
    for directory in (data_dir, data_dir / "imdb"):
        for name in jsonl_candidates(split):
            if (directory / name).is_file():
                return _load_jsonl(directory / name, split)
    for root in acl_candidates(data_dir):
        if all((root / folder).is_dir() for folder, _ in _ACL_FOLDERS[split]):
            return _load_acl(root, split)
    raise DataError(_missing_message(data_dir, split))


def has_imdb_split(data_dir: Path, split: str) -> bool:
    """Whether :func:`load_imdb` would find the split (without reading it)."""
    directories = (data_dir, data_dir / "imdb")
    if any((d / name).is_file() for d in directories for name in jsonl_candidates(split)):
        return True
    folders = _ACL_FOLDERS.get(split, [])
    return any(all((root / f).is_dir() for f, _ in folders) for root in acl_candidates(data_dir))


def jsonl_candidates(split: str) -> list[str]:
    return [f"imdb_{split}.jsonl.gz", f"imdb_{split}.jsonl"]


def acl_candidates(data_dir: Path) -> list[Path]:
    """Where an extracted ``aclImdb_v1.tar.gz`` may be: beside the JSON lines, or the data dir itself."""
    return [data_dir / "aclImdb", data_dir / "imdb" / "aclImdb", data_dir]


def _load_jsonl(path: Path, split: str) -> Dataset:
    texts: list[str] = []
    labels: list[int] = []
    for row in iter_jsonl(path):
        # Training data is read strictly: a silently skipped row would change what the model learns.
        if row.error is not None or row.record is None:
            raise FormatError(path, f"line {row.line}: {row.error}")
        text, label = _parse_record(path, row.line, row.record, split)
        texts.append(text)
        labels.append(label)
    return Dataset(
        "imdb",
        split,
        texts,
        np.asarray(labels, dtype=np.int64),
        {source_name(path): file_sha256(path)},
    )


def _parse_record(path: Path, line: int, record: dict[str, object], split: str) -> tuple[str, int]:
    text = record.get("text")
    if not isinstance(text, str):
        raise FormatError(path, f"line {line}: expected a string field 'text'")
    label = record.get("label", UNLABELLED if split == "unsup" else None)
    allowed = (UNLABELLED,) if split == "unsup" else (0, 1)
    if isinstance(label, bool) or label not in allowed:
        raise FormatError(path, f"line {line}: field 'label' must be one of {list(allowed)}, got {label!r}")
    return text, int(label)  # type: ignore[arg-type]


def _load_acl(root: Path, split: str) -> Dataset:
    texts: list[str] = []
    labels: list[int] = []
    all_files: list[Path] = []
    for folder, label in _ACL_FOLDERS[split]:
        files = _sorted_review_files(root / folder)
        for path in files:
            texts.append(_read_review(path))
            labels.append(label)
        all_files.extend(files)
    if not texts:
        raise DataError(f"{root}: the {split} folders hold no <id>_<rating>.txt reviews")
    digest = files_sha256(all_files, root)
    key = f"{source_name(root)}/{split}"
    return Dataset("imdb", split, texts, np.asarray(labels, dtype=np.int64), {key: digest})


def _sorted_review_files(folder: Path) -> list[Path]:
    # Sort by the numeric id so row order (and so the validation split) never depends on the file system.
    files = [p for p in folder.iterdir() if _ACL_FILE_NAME.match(p.name)]
    return sorted(files, key=lambda p: int(_ACL_FILE_NAME.match(p.name).group(1)))  # type: ignore[union-attr]


def _read_review(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(path, f"invalid UTF-8 at byte {exc.start}") from exc


def _missing_message(data_dir: Path, split: str) -> str:
    folders = ", ".join(folder + "/" for folder, _ in _ACL_FOLDERS[split])
    return (
        f"no IMDb {split} split in {data_dir} or {data_dir / 'imdb'}: looked for "
        f"{' or '.join(jsonl_candidates(split))}, or an aclImdb/ folder with {folders}"
    )
