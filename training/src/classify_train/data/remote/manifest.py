"""What can be downloaded, from where, and the sha256 each file must have: the pinned manifest.

The digests are not ours: each is copied from a public checksum list maintained by a data set library, cited
beside it, so a download is checked against what thousands of other users received. A manifest is a plain
mapping from a canonical file name to its URL and digest, so an operator (or a test) can supply another one
for a mirror that holds re-packed files.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from classify_train.data.dataset import DataError

MIRROR_ENV = "CLASSIFY_DATA_MIRROR"
MANIFEST_ENV = "CLASSIFY_DATA_MANIFEST"
IMDB_ARCHIVE = "aclImdb_v1.tar.gz"


@dataclass(frozen=True)
class RemoteFile:
    """One downloadable file: its canonical name (also its name on disk and under a mirror), URL, digest."""

    name: str
    url: str
    sha256: str


Manifest = Mapping[str, RemoteFile]

# TensorFlow Datasets' checksum list for MNIST, which also gives each file's size (9912422, 28881, 1648877,
# 4542 bytes):
# https://github.com/tensorflow/datasets/blob/master/tensorflow_datasets/url_checksums/mnist.txt
# The URLs are the ones that list names: Google's CVDF copy of LeCun's files (yann.lecun.com itself now
# asks for a login); torchvision pins the same four names by md5 only, Keras ships MNIST as mnist.npz.
_MNIST_BASE = "https://storage.googleapis.com/cvdf-datasets/mnist/"
# TensorFlow Datasets' checksum list for imdb_reviews (84125825 bytes):
# https://github.com/tensorflow/datasets/blob/master/tensorflow_datasets/datasets/imdb_reviews/checksums.tsv
_IMDB_URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"

PINNED: Manifest = {
    remote.name: remote
    for remote in (
        RemoteFile(
            "train-images-idx3-ubyte.gz",
            _MNIST_BASE + "train-images-idx3-ubyte.gz",
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        ),
        RemoteFile(
            "train-labels-idx1-ubyte.gz",
            _MNIST_BASE + "train-labels-idx1-ubyte.gz",
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        ),
        RemoteFile(
            "t10k-images-idx3-ubyte.gz",
            _MNIST_BASE + "t10k-images-idx3-ubyte.gz",
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        ),
        RemoteFile(
            "t10k-labels-idx1-ubyte.gz",
            _MNIST_BASE + "t10k-labels-idx1-ubyte.gz",
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        ),
        RemoteFile(
            IMDB_ARCHIVE,
            _IMDB_URL,
            "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe",
        ),
    )
}

# Digests of the *decompressed* content, for copies that were re-compressed (gzip output depends on the
# compressor and its settings, so a re-gzipped IDX file has another file digest but the same bytes inside).
# TFDS pins only the archives; these MNIST values are the sha256 of the uncompressed IDX files, as published
# beside the TFDS archive digests by independent MNIST downloaders (searched for on public GitHub code), and
# the train pair is also what the reference data folder's README states for its re-gzipped copies.
# `classify-train data verify` accepts a file whose decompressed content matches.
CONTENT_SHA256: Mapping[str, str] = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    # Not published anywhere: the JSON lines are our re-encoding of aclImdb_v1.tar.gz (see imdb_archive.py).
    # These are the digests of the decompressed imdb_train/imdb_unsup JSON lines of the reference copy the
    # project was developed on; the converter writes the same lines, so a converted copy matches them too.
    "imdb_train.jsonl": "2660b5f41d92414f7d89d583a19ab43a548089661a83c5a254c72b8fdaebcf97",
    "imdb_unsup.jsonl": "e3535cca624b9f2c5a7deeece4c6fb77ac7dc5760aaa2dcc32e3fa1ea3c5536c",
}

# Which downloads each split needs, and the sub-folder of the data directory they go to.
SPLIT_FILES: Mapping[tuple[str, str], tuple[str, ...]] = {
    ("mnist", "train"): ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    ("mnist", "test"): ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
    ("imdb", "train"): (IMDB_ARCHIVE,),
    ("imdb", "test"): (IMDB_ARCHIVE,),
    ("imdb", "unsup"): (IMDB_ARCHIVE,),
}


def dataset_of(name: str) -> str:
    """The sub-folder (``mnist`` or ``imdb``) a canonical file belongs in."""
    return "imdb" if name == IMDB_ARCHIVE or name.startswith("imdb_") else "mnist"


def with_mirror(manifest: Manifest, base_url: str | None) -> Manifest:
    """The manifest with every URL replaced by ``base_url/<canonical name>``; digests stay pinned."""
    if not base_url:
        return manifest
    base = base_url if base_url.endswith("/") else base_url + "/"
    return {name: replace(remote, url=base + name) for name, remote in manifest.items()}


def load_manifest(path: Path) -> Manifest:
    """Read a JSON manifest ``{"<canonical name>": {"url": ..., "sha256": ...}, ...}``; files it does not
    name keep their pinned entries."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable JSON manifest ({exc})") from exc
    if not isinstance(document, dict):
        raise DataError(f"{path}: a manifest is a JSON object of file name -> {{url, sha256}}")
    manifest = dict(PINNED)
    for name, entry in document.items():
        if name not in PINNED:
            raise DataError(f"{path}: unknown file {name!r}; the manifest names {sorted(PINNED)}")
        if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) for k in ("url", "sha256")):
            raise DataError(f"{path}: entry {name!r} must be an object with string fields url and sha256")
        manifest[name] = RemoteFile(name, entry["url"], entry["sha256"].lower())
    return manifest
