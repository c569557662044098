"""What every ``classify`` command shares: the connection to the server, the --target option, the one-line
fatal error.

Kept free of grpc and numpy at import time (they are imported inside the methods) so ``--help`` is fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

DEFAULT_TARGET = "127.0.0.1:8500"
REQUEST_ID_HEADER = "x-request-id"  # errors.REQUEST_ID_HEADER; not imported, so --help stays free of grpc
TARGET_HELP = "Server address HOST:PORT (or dns:///HOST:PORT); env CLASSIFY_TARGET."


class FatalError(click.ClickException):
    """A problem with the whole job (input file, server, model): one line on stderr, exit code 2."""

    exit_code = 2


def parse_headers(values: tuple[str, ...]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for value in values:
        key, separator, content = value.partition("=")
        if not separator or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got {value!r}", param_hint="--header")
        headers[key.strip().lower()] = content
    return headers


def target_option(function: Any) -> Any:
    return click.option(
        "--target",
        envvar="CLASSIFY_TARGET",
        default=DEFAULT_TARGET,
        show_default=True,
        help=TARGET_HELP,
    )(function)


@dataclass(frozen=True)
class Connection:
    """How every command reaches the server: metadata headers, an optional token, optional TLS files."""

    headers: dict[str, str]
    token: str | None = None
    tls: bool = False
    tls_files: tuple[Path | None, Path | None, Path | None] = (None, None, None)

    def credentials(self) -> Any:
        if not self.tls:
            return None
        from ..settings import tls_credentials

        return tls_credentials(*self.tls_files)

    def call_headers(self) -> dict[str, str]:
        from ..settings import with_token

        return with_token(self.headers, self.token)

    def client(self, target: str, timeout: float | None) -> Any:
        from ..client import Client

        # Interactive commands answer at once: an unreachable server is reported, not waited for
        # (`classify health --wait` is the way to wait).
        return Client(
            target, timeout=timeout, headers=self.call_headers(), credentials=self.credentials(), retry=None
        )
