"""`classify models`, `classify load` and `classify unload`: what the server serves, and changing it."""

from __future__ import annotations

import sys
from typing import Any

import click

from .common import Connection, FatalError, target_option


@click.command()
@target_option
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True)
@click.pass_obj
def models(connection: Connection, target: str, timeout: float) -> None:
    """List the models the server answers with."""
    from rich.console import Console
    from rich.table import Table

    from ..errors import ClassifyError, describe_for_target

    with connection.client(target, timeout) as client:
        try:
            infos = client.models()
            details = {info.name: _metadata_or_none(client, info.name) for info in infos}
        except ClassifyError as exc:
            raise FatalError(describe_for_target(exc, target)) from None
    table = Table("name", "version", "task", "state", "versions", "validation accuracy", "quick")
    for info in infos:
        metadata = details[info.name]
        accuracy = metadata.metrics.get("validation_accuracy") if metadata else None
        quick = "?" if metadata is None or info.state != "ready" else ("yes" if metadata.quick else "no")
        table.add_row(
            info.name,
            str(info.version) if info.version else "",
            info.task,
            info.state,
            ", ".join(f"{v.version} {v.state}" for v in info.versions),
            "" if accuracy is None else f"{accuracy:.4f}",
            quick,
        )
    problems = [(info.name, v) for info in infos for v in info.versions if v.reason]
    console = Console()
    if not console.is_terminal:  # pipes get 80 columns by default: too narrow, the table would truncate
        console = Console(width=160)
    console.print(table)
    for name, version in problems:
        console.print(f"{name} version {version.version} {version.state}: {version.reason}", markup=False)


def _metadata_or_none(client: Any, name: str) -> Any:
    from ..errors import ClassifyError, UnavailableError

    try:
        return client.metadata(name)
    except UnavailableError:
        raise
    except ClassifyError:  # e.g. a model that went away between the two calls: show what we have
        return None


@click.command("load")
@target_option
@click.argument("model")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=300.0, show_default=True)
@click.pass_obj
def load_command(connection: Connection, target: str, model: str, timeout: float) -> None:
    """Load MODEL from the server's repository now (or serve it again after `unload`)."""
    _change_model(connection, target, timeout, lambda client: client.load_model(model))


@click.command("unload")
@target_option
@click.argument("model")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=60.0, show_default=True)
@click.pass_obj
def unload_command(connection: Connection, target: str, model: str, timeout: float) -> None:
    """Stop serving MODEL (queued requests finish first) until `load`."""
    _change_model(connection, target, timeout, lambda client: client.unload_model(model))


def _change_model(connection: Connection, target: str, timeout: float, change: Any) -> None:
    from ..errors import ClassifyError, describe_for_target

    with connection.client(target, timeout) as client:
        try:
            info = change(client)
        except ClassifyError as exc:
            raise FatalError(describe_for_target(exc, target)) from None
    versions = ", ".join(
        f"{v.version} {v.state}" + (f" ({v.reason})" if v.reason else "") for v in info.versions
    )
    click.echo(f"{info.name}: {info.state}" + (f"; versions: {versions}" if versions else ""))
    sys.exit(0 if info.state in ("ready", "unloaded") else 1)
