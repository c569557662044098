"""`classify explain`: why the model said what it did, as pictures (images) or a highlighted page
(reviews), plus the raw attributions; docs/explain.md."""

from __future__ import annotations

from pathlib import Path

import click

from .common import Connection, FatalError, target_option

METHOD_CHOICES = ("auto", "votes", "integrated_gradients", "occlusion")
MAX_STEPS = 1024  # the server's bound (serving/explain_runner.py), checked here to fail before any call


@click.command("explain")
@target_option
@click.option("--model", required=True, help="Model name, e.g. mnist-cnn or imdb-lstm.")
@click.option(
    "--version", "model_version", type=click.IntRange(min=1), help="Model version; default the newest."
)
@click.option(
    "--input",
    "input_path",
    required=True,
    type=click.Path(path_type=Path),
    help="Any input `classify score` reads: IDX images (.gz too), .npy, a folder of PNG/JPEG, JSON lines, "
    "text lines, CSV or Parquet.",
)
@click.option(
    "--output",
    "output_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the results (made if missing): images get a PNG each, contact-sheet.png, "
    "attributions.npy and items.jsonl; reviews get reviews.html and attributions.jsonl.",
)
@click.option(
    "--method",
    type=click.Choice(METHOD_CHOICES),
    default="auto",
    show_default=True,
    help="auto: the model's first method (votes for mnist-softmax, integrated gradients otherwise).",
)
@click.option(
    "--steps",
    type=click.IntRange(0, MAX_STEPS),
    default=0,
    show_default=True,
    help="Integrated gradients' steps; 0: the server's default (32).",
)
@click.option("--target-label", help="Explain this class (a label name, e.g. 7) for every item.")
@click.option(
    "--target-index", type=click.IntRange(min=0), help="Explain this class (an index) for every item."
)
@click.option(
    "--top-k",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Without a target: explain each item's K best classes (a PNG shows them side by side).",
)
@click.option("--limit", type=click.IntRange(min=0), help="Explain only the first N input rows.")
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=64,
    show_default=True,
    help="Items an Explain call (the server cuts each call into bounded executions).",
)
@click.option(
    "--timeout", type=click.FloatRange(min=0, min_open=True), default=120.0, show_default=True,
    help="Seconds a call may take.",
)  # fmt: skip
@click.option(
    "--text-column", default="text", show_default=True, help="CSV/Parquet column (JSON field) of texts."
)
@click.option("--image-column", default="image", show_default=True, help="Parquet column of images.")
@click.option(
    "--pixel-prefix",
    default="pixel",
    show_default=True,
    help="Image tables without an image column: columns PREFIX0..PREFIX783.",
)
@click.option(
    "--id-column",
    help="An input column (CSV, Parquet, JSON lines) written as each item's id; default its position.",
)
@click.pass_obj
def explain(
    connection: Connection,
    *,
    target: str,
    model: str,
    model_version: int | None,
    input_path: Path,
    output_dir: Path,
    method: str,
    steps: int,
    target_label: str | None,
    target_index: int | None,
    top_k: int,
    limit: int | None,
    batch_size: int,
    timeout: float,
    text_column: str,
    image_column: str,
    pixel_prefix: str,
    id_column: str | None,
) -> None:
    """Explain a file of images or reviews: attribution pictures or a highlighted page, and the raw maps.

    Exit code 0: every row explained; 1: some rows failed (named on stderr); 2: a whole-job problem.
    """
    import sys

    from .explain_job import ExplainOptions, run_explain
    from .inputs import TableColumns
    from .score_job import JobError

    if target_label is not None and target_index is not None:
        raise click.UsageError("--target-label and --target-index name the same thing: give one")
    if top_k > 1 and (target_label is not None or target_index is not None):
        raise click.UsageError("--top-k explains each item's best classes; it does not go with a target")
    columns = TableColumns(
        text=text_column,
        image=image_column,
        pixel_prefix=pixel_prefix,
        ids=(id_column,) if id_column else (),
    )
    options = ExplainOptions(
        model=model,
        input=input_path,
        output=output_dir,
        target=target,
        version=model_version,
        method=method,
        steps=steps,
        target_label=target_label,
        target_index=target_index,
        top_k=top_k,
        batch_size=batch_size,
        limit=limit,
        timeout=timeout,
        headers=connection.call_headers(),
        credentials=connection.credentials(),
        columns=columns,
    )
    try:
        summary = run_explain(options)
    except JobError as exc:
        raise FatalError(str(exc)) from None
    click.echo(summary.line())
    sys.exit(1 if summary.failed else 0)
