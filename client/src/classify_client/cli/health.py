"""`classify health`: the server's (or a model's) health status, optionally waiting for SERVING."""

from __future__ import annotations

import sys
import time

import click

from .common import Connection, FatalError, target_option


@click.command()
@target_option
@click.option("--model", help="Check this model instead of the server as a whole.")
@click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=0.0,
    help="Poll up to this many seconds until SERVING (an unreachable server counts as not yet).",
)
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=5.0, show_default=True)
@click.pass_obj
def health(connection: Connection, target: str, model: str | None, wait: float, timeout: float) -> None:
    """Print the health status (SERVING, NOT_SERVING, SERVICE_UNKNOWN); exit 0 only when SERVING."""
    from ..errors import ClassifyError, UnavailableError, describe_for_target
    from ..health import SERVING

    deadline = time.monotonic() + wait
    with connection.client(target, timeout) as client:
        while True:
            try:
                status = client.health(model or "")
            except UnavailableError as exc:
                status, unreachable = None, exc
            except ClassifyError as exc:
                raise FatalError(describe_for_target(exc, target)) from None
            if status == SERVING or time.monotonic() + 0.25 > deadline:
                break
            time.sleep(0.25)
    if status is None:
        raise FatalError(describe_for_target(unreachable, target))
    click.echo(status)
    sys.exit(0 if status == SERVING else 1)
