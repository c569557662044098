"""``classify-train export-signatures``: the command a server names when a version cannot explain."""

from __future__ import annotations

import os
from pathlib import Path

import click

from classify_train.cli_data import user_errors_as_click
from classify_train.recipes import ALL_MODEL_NAMES
from classify_train.repository import existing_versions


@click.command("export-signatures")
@click.option(
    "--model-repository",
    "repo",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Model repository holding NAME/<version>/.",
)
@click.option("--name", required=True, type=click.Choice(ALL_MODEL_NAMES), help="Model to re-export.")
@click.option("--version", type=click.IntRange(min=1), help="Version to re-export (default: the newest).")
@user_errors_as_click
def export_signatures_command(*, repo: Path, name: str, version: int | None) -> None:
    """Add the explain signatures to an exported version, without retraining; written as the next version."""
    versions = existing_versions(repo / name)
    if not versions:
        raise click.ClickException(f"no versions of {name!r} in {repo} (looked for {repo / name}/<integer>/)")
    if version is not None and version not in versions:
        raise click.ClickException(f"{name!r} has no version {version} in {repo}; it has {versions}")
    source = repo / name / str(version or versions[-1])
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    from classify_train.explain_reexport import export_signatures

    written = export_signatures(source)
    click.echo(f"{name}: {source} re-exported with its explain signatures as {written}")
