"""Datasets fetched and verified: downloads from a real HTTP server on loopback (the "mirror"), serving files
built from the shared data, with a manifest of URLs and digests this test supplies; resume after a dropped
connection, a corrupted file refused, verify, the offline error, and the data directory's search order."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import socket
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from classify_client.formats import iter_jsonl, read_idx, write_idx
from classify_train.cli import main
from classify_train.data.datadir import DATA_DIR_ENV
from classify_train.data.imdb import load_imdb
from classify_train.data.mnist import load_mnist
from classify_train.data.remote.download import ChecksumError, download, part_path
from classify_train.data.remote.manifest import CONTENT_SHA256, IMDB_ARCHIVE, MIRROR_ENV, PINNED, RemoteFile
from classify_train.data.remote.verify import MISMATCH, OK, verify_folder

REPO_ROOT = Path(__file__).resolve().parents[1]
_REVIEWS_PER_FOLDER = 120


@pytest.fixture(scope="module")
def shared_dir() -> Path:
    return Path(os.environ.get(DATA_DIR_ENV) or REPO_ROOT.parent / "shared" / "data")


# --- the mirror: files built from the shared data, served over HTTP with Range --------------------------


@dataclass
class Mirror:
    """What the server serves, what it was asked, and a file whose first response it cuts short."""

    files: dict[str, bytes]
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    drop_once: set[str] = field(default_factory=set)
    url: str = ""

    def manifest(self) -> dict[str, dict[str, str]]:
        return {
            name: {"url": self.url + name, "sha256": hashlib.sha256(data).hexdigest()}
            for name, data in self.files.items()
        }


def _handler(mirror: Mirror) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            name = self.path.lstrip("/")
            mirror.requests.append((name, self.headers.get("Range")))
            if name not in mirror.files:
                self.send_error(404)
                return
            data = mirror.files[name]
            start = (
                int(self.headers["Range"].removeprefix("bytes=").split("-")[0])
                if "Range" in self.headers
                else 0
            )
            self.send_response(206 if start else 200)
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            body = data[start:]
            if name in mirror.drop_once:
                # Announce the whole length, send a third, hang up: a connection lost mid-file.
                mirror.drop_once.discard(name)
                body = body[: len(body) // 3]
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # keep the test output quiet
            pass

    return Handler


@pytest.fixture
def mirror(served_files: dict[str, bytes]) -> Iterator[Mirror]:
    state = Mirror(dict(served_files))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{server.server_address[1]}/"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join()


def _acl_tar(reviews: dict[str, list[dict]]) -> bytes:
    """An aclImdb_v1.tar.gz-layout archive: aclImdb/<folder>/<id>_<rating>.txt, in shuffled order (the
    converter must sort by id itself)."""
    members = [
        (f"aclImdb/{folder}/{row['id']}_{row['rating']}.txt", row["text"].encode("utf-8"))
        for folder, rows in reviews.items()
        for row in rows
    ]
    order = np.random.default_rng(0).permutation(len(members))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for index in order:
            name, data = members[index]
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def shared_reviews(shared_dir: Path) -> dict[str, list[dict]]:
    """A few hundred real reviews per aclImdb folder, as the shared JSON lines hold them."""
    train = [row.record for row in iter_jsonl(shared_dir / "imdb" / "imdb_train.jsonl.gz")]
    unsup = [row.record for row in iter_jsonl(shared_dir / "imdb" / "imdb_unsup.jsonl.gz")]
    negatives, positives = train[:12500], train[12500:]
    n = _REVIEWS_PER_FOLDER
    return {
        "train/neg": negatives[:n],
        "train/pos": positives[:n],
        # Test reviews have their own ids in aclImdb; here they are other real reviews.
        "test/neg": [dict(r, id=i) for i, r in enumerate(negatives[n : 2 * n])],
        "test/pos": [dict(r, id=i) for i, r in enumerate(positives[n : 2 * n])],
        "train/unsup": unsup[:n],
    }  # type: ignore[return-value]


@pytest.fixture(scope="module")
def served_files(
    shared_dir: Path, shared_reviews: dict[str, list[dict]], tmp_path_factory
) -> dict[str, bytes]:
    mnist = shared_dir / "mnist"
    files = {
        name: (mnist / name).read_bytes()
        for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")
    }
    # No t10k files in the shared folder (kept out on purpose): stand-ins made of real training digits.
    work = tmp_path_factory.mktemp("t10k")
    for kind, source in (
        ("images-idx3", "train-images-idx3-ubyte.gz"),
        ("labels-idx1", "train-labels-idx1-ubyte.gz"),
    ):
        write_idx(work / f"t10k-{kind}-ubyte.gz", read_idx(mnist / source)[:500])
        files[f"t10k-{kind}-ubyte.gz"] = (work / f"t10k-{kind}-ubyte.gz").read_bytes()
    files[IMDB_ARCHIVE] = _acl_tar(shared_reviews)
    return files


@pytest.fixture
def manifest_file(mirror: Mirror, tmp_path: Path) -> Path:
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(mirror.manifest()))
    return path


@pytest.fixture
def cache_env(tmp_path: Path) -> dict[str, str]:
    """An empty user cache and no CLASSIFY_DATA_DIR: the situation of a fresh machine."""
    return {"XDG_CACHE_HOME": str(tmp_path / "xdg"), DATA_DIR_ENV: ""}


def _cache(env: dict[str, str]) -> Path:
    return Path(env["XDG_CACHE_HOME"]) / "classify" / "datasets"


def _run(*args: str, env: dict[str, str]) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
    return result.exit_code, result.output


# --- fetch -------------------------------------------------------------------------------------------------


def test_fetch_into_an_empty_cache_gives_what_the_loaders_read(
    mirror: Mirror, manifest_file: Path, cache_env: dict[str, str], shared_reviews: dict[str, list[dict]]
) -> None:
    code, output = _run("data", "fetch", "--manifest", str(manifest_file), env=cache_env)
    assert code == 0, output
    cache = _cache(cache_env)
    train, test = load_mnist(cache), load_mnist(cache, "test")
    assert train.inputs.shape == (60000, 28, 28) and train.labels[:10].tolist() == [
        5,
        0,
        4,
        1,
        9,
        2,
        1,
        3,
        1,
        4,
    ]
    assert test.inputs.shape == (500, 28, 28)
    imdb = load_imdb(cache)
    n = _REVIEWS_PER_FOLDER
    assert imdb.labels.tolist() == [0] * n + [1] * n
    assert imdb.inputs == [r["text"] for r in shared_reviews["train/neg"] + shared_reviews["train/pos"]]
    assert len(load_imdb(cache, "test")) == 2 * n and len(load_imdb(cache, "unsup")) == n
    assert not list(cache.rglob("*.part"))
    # A second fetch finds everything and downloads nothing.
    before = len(mirror.requests)
    assert _run("data", "fetch", "--manifest", str(manifest_file), env=cache_env)[0] == 0
    assert len(mirror.requests) == before


def test_converted_json_lines_are_the_shared_layout_byte_for_byte(
    mirror: Mirror, manifest_file: Path, cache_env: dict[str, str], shared_dir: Path
) -> None:
    assert _run("data", "fetch", "imdb", "--manifest", str(manifest_file), env=cache_env)[0] == 0
    with gzip.open(_cache(cache_env) / "imdb" / "imdb_train.jsonl.gz", "rb") as converted:
        lines = converted.read().splitlines(keepends=True)
    with gzip.open(shared_dir / "imdb" / "imdb_train.jsonl.gz", "rb") as reference:
        shared = reference.read().splitlines(keepends=True)
    n = _REVIEWS_PER_FOLDER
    assert lines == shared[:n] + shared[12500 : 12500 + n]


def test_training_command_downloads_into_the_cache_through_the_mirror(
    mirror: Mirror, manifest_file: Path, cache_env: dict[str, str], tmp_path: Path
) -> None:
    """`split` reads data like training does, without TensorFlow: the fresh-machine path end to end."""
    env = {**cache_env, MIRROR_ENV: mirror.url, "CLASSIFY_DATA_MANIFEST": str(manifest_file)}
    code, output = _run("split", "mnist", "--out", str(tmp_path / "out"), "--limit", "20", env=env)
    assert code == 0, output
    assert {name for name, _ in mirror.requests} == {
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
    }
    assert read_idx(tmp_path / "out" / "validation-labels-idx1-ubyte.gz").shape == (20,)


def test_an_interrupted_download_resumes_with_a_range_request(mirror: Mirror, tmp_path: Path) -> None:
    name = "train-images-idx3-ubyte.gz"
    mirror.drop_once.add(name)
    remote = RemoteFile(name, mirror.url + name, hashlib.sha256(mirror.files[name]).hexdigest())
    path = download(remote, tmp_path / name)
    (first, first_range), (second, second_range) = mirror.requests
    assert first == second == name and first_range is None
    assert second_range is not None and second_range.startswith("bytes=")
    resumed_from = int(second_range.removeprefix("bytes=").rstrip("-"))
    assert resumed_from == len(mirror.files[name]) // 3
    assert path.read_bytes() == mirror.files[name] and not part_path(path).exists()


def test_a_corrupted_download_is_refused_deleted_and_named_with_both_digests(
    mirror: Mirror, manifest_file: Path, cache_env: dict[str, str]
) -> None:
    name = "train-labels-idx1-ubyte.gz"
    good = hashlib.sha256(mirror.files[name]).hexdigest()
    mirror.files[name] = mirror.files[name][:-10] + b"corrupted!"
    bad = hashlib.sha256(mirror.files[name]).hexdigest()
    code, output = _run("data", "fetch", "mnist", "--manifest", str(manifest_file), env=cache_env)
    assert code == 1
    assert name in output and good in output and bad in output and "deleted" in output
    folder = _cache(cache_env) / "mnist"
    assert not (folder / name).exists() and not part_path(folder / name).exists()
    with pytest.raises(ChecksumError, match=bad):
        download(RemoteFile(name, mirror.url + name, good), folder / name)


# --- verify ------------------------------------------------------------------------------------------------


def test_verify_accepts_the_shared_folder_by_its_pinned_content_digests(shared_dir: Path) -> None:
    """The shared MNIST files are re-gzipped (other file digests than the TFDS archives), so they are checked
    by the pinned digests of the canonical IDX content; the IMDb JSON lines by the reference digests."""
    checks = {check.path.name: check for check in verify_folder(shared_dir, PINNED)}
    assert set(checks) == {
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "imdb_train.jsonl.gz",
        "imdb_unsup.jsonl.gz",
    }
    assert all(check.status == OK for check in checks.values()), checks
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        assert CONTENT_SHA256[name] in checks[name + ".gz"].detail
    code, output = _run("data", "verify", "--data-dir", str(shared_dir), env={})
    assert code == 0 and "4 files checked" in output


def test_verify_names_a_tampered_file_with_both_digests(
    mirror: Mirror, manifest_file: Path, cache_env: dict[str, str]
) -> None:
    assert _run("data", "fetch", "mnist", "--manifest", str(manifest_file), env=cache_env)[0] == 0
    code, output = _run("data", "verify", "--manifest", str(manifest_file), env=cache_env)
    assert code == 0 and "none differs" in output
    labels = _cache(cache_env) / "mnist" / "t10k-labels-idx1-ubyte.gz"
    write_idx(labels, np.zeros(500, dtype=np.uint8))
    tampered = hashlib.sha256(gzip.decompress(labels.read_bytes())).hexdigest()
    code, output = _run("data", "verify", "--manifest", str(manifest_file), env=cache_env)
    assert code == 1
    line = next(line for line in output.splitlines() if labels.name in line)
    assert line.startswith(MISMATCH) and tampered in line
    assert (
        mirror.manifest()[labels.name]["sha256"] in line and CONTENT_SHA256["t10k-labels-idx1-ubyte"] in line
    )


# --- offline, and where the data is looked for -------------------------------------------------------------


def _closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def test_offline_with_no_data_is_one_error_listing_the_three_ways(
    cache_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**cache_env, MIRROR_ENV: _closed_port_url()}
    code, output = _run("mnist-softmax", "--export", str(tmp_path / "repo"), env=env)
    assert code == 1
    assert output.startswith("Error: ") and output.count("\n") == 1  # one line, no traceback
    assert "train-images-idx3-ubyte.gz" in output and "Connection refused" in output
    assert "--data-dir" in output and DATA_DIR_ENV in output and "--mirror" in output and MIRROR_ENV in output
    assert str(_cache(cache_env) / "mnist") in output
    assert not (tmp_path / "repo").exists()


def test_where_follows_flag_then_environment_then_cache(cache_env: dict[str, str], tmp_path: Path) -> None:
    flag, env_dir = tmp_path / "flag", tmp_path / "env"
    flag.mkdir()
    env_dir.mkdir()
    cache = _cache(cache_env)
    code, output = _run("data", "where", env=cache_env)
    assert code == 0 and output.splitlines()[0] == f"{cache} (from user cache)"
    assert output.splitlines()[1:] == [
        "search order:",
        "  1. --data-dir: (not set)",
        f"  2. {DATA_DIR_ENV}: (not set)",
        f"  3. user cache: {cache}",
    ]
    with_env = {**cache_env, DATA_DIR_ENV: str(env_dir)}
    assert _run("data", "where", env=with_env)[1].splitlines()[0] == f"{env_dir} (from {DATA_DIR_ENV})"
    output = _run("data", "where", "--data-dir", str(flag), env=with_env)[1]
    assert output.splitlines()[0] == f"{flag} (from --data-dir)"
    assert f"  1. --data-dir: {flag}" in output and f"  2. {DATA_DIR_ENV}: {env_dir}" in output
