"""Download one file: resumable (HTTP Range into ``<name>.part``), with a progress bar, and refused unless
its sha256 is the pinned one. Only the standard library's HTTP client: one GET with one header needs no
more, and it keeps classify-train's dependencies what they were."""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from classify_train.data.checksums import file_sha256
from classify_train.data.dataset import DataError
from classify_train.data.remote.manifest import RemoteFile

_CHUNK = 1 << 16
_TIMEOUT_SECONDS = 30.0
# A connection lost mid-file is resumed from where it stopped this many times before giving up.
_ATTEMPTS = 4


class UnreachableError(DataError):
    """The server could not be reached at all (offline, wrong mirror): nothing was downloaded."""


class ChecksumError(DataError):
    """A downloaded file's sha256 is not the pinned one; the file has been deleted."""


def part_path(destination: Path) -> Path:
    return destination.with_name(destination.name + ".part")


def download(remote: RemoteFile, destination: Path, *, console: Console | None = None) -> Path:
    """Fetch ``remote`` to ``destination``, resuming a ``.part`` left by an earlier attempt; the file only
    gets its final name once its digest is the pinned one."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = part_path(destination)
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            _transfer(remote, partial, console)
            break
        except (http.client.IncompleteRead, ConnectionError, TimeoutError) as exc:
            if attempt == _ATTEMPTS:
                raise DataError(
                    f"{remote.name}: the connection to {remote.url} kept breaking ({exc!r}); "
                    f"{partial.stat().st_size if partial.exists() else 0} bytes are kept in {partial} "
                    "and the next fetch resumes from there"
                ) from exc
    check_digest(remote, partial)
    partial.replace(destination)
    return destination


def check_digest(remote: RemoteFile, path: Path) -> None:
    """Delete ``path`` and raise ChecksumError unless its sha256 is ``remote.sha256``."""
    actual = file_sha256(path)
    if actual != remote.sha256:
        path.unlink()
        raise ChecksumError(
            f"{remote.name} (from {remote.url}) has sha256 {actual}, expected the pinned {remote.sha256}; "
            "the file was deleted"
        )


def _transfer(remote: RemoteFile, partial: Path, console: Console | None) -> None:
    offset = partial.stat().st_size if partial.exists() else 0
    headers = {"User-Agent": "classify-train"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(
            urllib.request.Request(remote.url, headers=headers), timeout=_TIMEOUT_SECONDS
        )
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # the .part is already whole (or longer): let the digest decide
            return
        raise DataError(f"{remote.name}: {remote.url} answered HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise UnreachableError(f"{remote.name}: cannot reach {remote.url} ({reason})") from exc
    with response:
        if offset and response.status != 206:  # the server ignored Range: start over
            offset = 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else None
        with partial.open("ab" if offset else "wb") as out, _progress_bar(console) as bar:
            task = bar.add_task(remote.name, total=total, completed=offset)
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                bar.advance(task, len(chunk))
            received = out.tell()
    # http.client ends a body cut short as if it were complete (it only raises for chunked bodies), so the
    # length it announced is what tells a dropped connection from the end of the file.
    if total is not None and received < total:
        raise http.client.IncompleteRead(b"", total - received)


def _progress_bar(console: Console | None) -> Progress:
    # On stderr, so a command's stdout (paths, summaries) stays clean for scripts; rich draws nothing live
    # when stderr is not a terminal.
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console or Console(stderr=True),
        transient=True,
    )
