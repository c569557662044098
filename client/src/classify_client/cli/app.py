"""The ``classify`` group: the options every command shares, and the list of commands.

Exit codes: 0 all good; 1 some rows failed (score) or not SERVING (health); 2 usage, whole-file or
connection problems. Heavy modules (grpc, numpy) are imported inside the commands so ``--help`` is fast.
"""

from __future__ import annotations

from pathlib import Path

import click

from .bench import bench
from .common import REQUEST_ID_HEADER, Connection, parse_headers
from .explain import explain
from .health import health
from .label import label_command
from .models import load_command, models, unload_command
from .score import score


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option(
    "--header",
    "headers",
    multiple=True,
    metavar="KEY=VALUE",
    help="gRPC metadata sent with every call (repeatable), e.g. authorization=Bearer ...",
)
@click.option(
    "--token",
    envvar="CLASSIFY_TOKEN",
    help="Bearer token for servers that require one (env CLASSIFY_TOKEN keeps it out of process lists).",
)
@click.option(
    "--request-id",
    envvar="CLASSIFY_REQUEST_ID",
    help="Sent as x-request-id with every call (env CLASSIFY_REQUEST_ID): the server's log line about any "
    "failed call names it. Without it the server makes up one per call and errors here show it.",
)
@click.option("--tls", is_flag=True, help="Connect with TLS, trusting the system's CAs (or --tls-ca).")
@click.option(
    "--tls-ca", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="PEM CA to trust."
)
@click.option(
    "--tls-cert",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="PEM client certificate, for servers that require mutual TLS (with --tls-key).",
)
@click.option(
    "--tls-key", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="PEM client key."
)
@click.version_option(package_name="classify-client")
@click.pass_context
def main(
    context: click.Context,
    *,
    headers: tuple[str, ...],
    token: str | None,
    request_id: str | None,
    tls: bool,
    tls_ca: Path | None,
    tls_cert: Path | None,
    tls_key: Path | None,
) -> None:
    """Client of the Classify gRPC model service."""
    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("--tls-cert and --tls-key go together")
    call_headers = parse_headers(headers)
    if request_id:
        call_headers[REQUEST_ID_HEADER] = request_id
    context.obj = Connection(
        headers=call_headers,
        token=token,
        tls=tls or any(path is not None for path in (tls_ca, tls_cert, tls_key)),
        tls_files=(tls_ca, tls_cert, tls_key),
    )


for command in (score, explain, models, health, load_command, unload_command, label_command, bench):
    main.add_command(command)
