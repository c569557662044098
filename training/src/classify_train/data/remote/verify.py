"""``classify-train data verify``: check every known file present in a data folder against its pin.

A file passes when its bytes have the pinned download digest, or, for a copy that was re-compressed or
stored uncompressed, when its decompressed content has the pinned content digest. Verify only reads: the
folder may be a shared, read-only copy; a failing file is named with both digests so it can be replaced.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from pathlib import Path

from classify_client.formats import GZIP_MAGIC
from classify_train.data.checksums import file_sha256
from classify_train.data.remote.manifest import CONTENT_SHA256, Manifest, dataset_of

_CHUNK = 1 << 20
OK, MISMATCH, UNPINNED = "ok", "MISMATCH", "no pin"


@dataclass(frozen=True)
class Check:
    path: Path
    status: str
    detail: str


def verify_folder(directory: Path, manifest: Manifest) -> list[Check]:
    """One Check per known file found in ``directory`` or its ``mnist/``/``imdb/`` sub-folders."""
    checks = []
    for name in _known_names(manifest):
        for folder in (directory / dataset_of(name), directory):
            if (folder / name).is_file():
                checks.append(check_file(folder / name, manifest))
                break
    return checks


def check_file(path: Path, manifest: Manifest) -> Check:
    name = path.name
    pinned = manifest[name].sha256 if name in manifest else None
    actual = file_sha256(path)
    if pinned == actual:
        return Check(path, OK, f"sha256 {actual} (pinned download digest)")
    content_pin = CONTENT_SHA256.get(name.removesuffix(".gz"))
    if content_pin is None:
        if pinned is None:
            return Check(path, UNPINNED, f"sha256 {actual}; derived file without a reference digest")
        return Check(path, MISMATCH, f"sha256 {actual}, expected the pinned {pinned}")
    content = content_sha256(path)
    if content == content_pin:
        form = "re-compressed" if name.endswith(".gz") else "uncompressed"
        return Check(path, OK, f"{form} copy: decompressed sha256 {content} is the pinned content digest")
    expected = f"the pinned {pinned} (file) or {content_pin} (content)" if pinned else f"{content_pin}"
    return Check(path, MISMATCH, f"decompressed sha256 {content}, expected {expected}")


def content_sha256(path: Path) -> str:
    """sha256 of the file's bytes after gunzip (or of the bytes themselves when it is not gzipped)."""
    digest = hashlib.sha256()
    with path.open("rb") as raw:
        gzipped = raw.read(2) == GZIP_MAGIC
        raw.seek(0)
        stream = gzip.GzipFile(fileobj=raw, mode="rb") if gzipped else raw
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _known_names(manifest: Manifest) -> list[str]:
    names = list(manifest)
    for stem in CONTENT_SHA256:
        names += [stem] if stem.endswith("ubyte") else [stem + ".gz", stem]
    names += ["imdb_test.jsonl.gz", "imdb_test.jsonl"]
    return names
