"""`classify label`: point a version label (stable, canary, any name) of a model at a loaded version."""

from __future__ import annotations

import click

from .common import Connection, FatalError, target_option


@click.command("label")
@target_option
@click.argument("model")
@click.argument("label")
@click.argument("version", type=click.IntRange(min=0))
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True)
@click.pass_obj
def label_command(
    connection: Connection, *, target: str, model: str, label: str, version: int, timeout: float
) -> None:
    """Point LABEL of MODEL at VERSION (0 removes the label), e.g. `classify label mnist-cnn canary 7`.

    The version must be loaded. Requests naming the label get that version from the next request on;
    unversioned requests go to 'stable' (and, with a canary split, its share to 'canary').
    """
    from ..errors import ClassifyError, describe_for_target

    with connection.client(target, timeout) as client:
        try:
            labels = client.set_version_label(model, label, version)
        except ClassifyError as exc:
            raise FatalError(describe_for_target(exc, target)) from None
    shown = ", ".join(f"{name}={number}" for name, number in labels.items()) or "none"
    click.echo(f"{model} labels: {shown}")
