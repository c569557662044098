"""`classify score`: score a file of images or texts and write one result row per input."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .common import Connection, FatalError, target_option


@click.command()
@target_option
@click.option("--model", required=True, help="Model name, e.g. mnist-cnn or imdb-lstm.")
@click.option(
    "--input",
    "input_path",
    required=True,
    type=click.Path(path_type=Path),
    help="IDX images (.gz too), .npy, a folder of PNG/JPEG, JSON lines (.jsonl[.gz]), text lines (.txt), "
    "CSV (.csv[.gz]: a text column, or label,pixel0..pixel783) or Parquet (a text or image column). "
    "With --engine ray: a folder or glob of Parquet, CSV or PNG/JPEG files.",
)
@click.option(
    "--labels",
    "labels_path",
    type=click.Path(path_type=Path),
    help="True labels: IDX labels file, .npy, or text with one label a line (indices or label names).",
)
@click.option(
    "--output",
    "output_path",
    required=True,
    type=click.Path(path_type=Path),
    help="Results, one row per input in input order; .csv, .jsonl or .parquet. "
    "With --engine ray: a folder that receives Parquet files.",
)
@click.option(
    "--text-column", default="text", show_default=True, help="CSV/Parquet column (JSON field) of texts."
)
@click.option(
    "--image-column",
    default="image",
    show_default=True,
    help="Parquet column of images: PNG/JPEG bytes or 784 pixel values.",
)
@click.option(
    "--pixel-prefix",
    default="pixel",
    show_default=True,
    help="Image tables without an image column: columns PREFIX0..PREFIX783 (MNIST as CSV).",
)
@click.option(
    "--label-column",
    default="label",
    show_default=True,
    help="CSV/Parquet column (JSON field) of true labels, used when present.",
)
@click.option(
    "--id-column",
    "id_columns",
    multiple=True,
    help="An input column (CSV, Parquet, JSON lines) copied into the output; repeat for several.",
)
@click.option(
    "--engine",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="local: this process; ray: a Ray Data pipeline (needs classify-client[ray]).",
)
@click.option(
    "--ray-address",
    help="With --engine ray: the Ray cluster to join (host:port, ray://host:10001 or auto); "
    "default: start a local one.",
)
@click.option("--summary-json", type=click.Path(path_type=Path), help="Also write the summary as JSON here.")
@click.option("--top-k", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--limit", type=click.IntRange(min=0), help="Score only the first N input rows.")
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True, help="Rows a call.")
@click.option("--in-flight", type=click.IntRange(min=1), default=4, show_default=True, help="Calls at once.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=30.0, show_default=True)
@click.option(
    "--protocol",
    type=click.Choice(["native", "v2"]),
    default="native",
    show_default=True,
    help="native: classify.v1 Classify; v2: KServe V2 / Open Inference Protocol ModelInfer.",
)
@click.option(
    "--priority",
    type=click.Choice(["high", "normal", "low"]),
    default="low",
    show_default=True,
    help="Where the calls queue on the server (x-classify-priority): low runs in the room online "
    "callers leave and is shed first under overload, so a batch job never starves them.",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Carry on from the complete rows of an existing --output (a killed job): no row is scored twice "
    "or lost. Without an existing output it starts afresh.",
)
@click.option(
    "--max-attempts",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Tries per call when the server is UNAVAILABLE (restarting, loading); 1 never retries. "
    "--timeout bounds the retries of one call.",
)
@click.option(
    "--max-backoff",
    type=click.FloatRange(min=0),
    default=5.0,
    show_default=True,
    help="Longest pause between retries, in seconds (pauses start at 0.1 s and double, with jitter).",
)
@click.pass_obj
def score(
    connection: Connection,
    *,
    target: str,
    model: str,
    input_path: Path,
    labels_path: Path | None,
    output_path: Path,
    summary_json: Path | None,
    top_k: int,
    limit: int | None,
    batch_size: int,
    in_flight: int,
    timeout: float,
    protocol: str,
    priority: str,
    resume: bool,
    max_attempts: int,
    max_backoff: float,
    text_column: str,
    image_column: str,
    pixel_prefix: str,
    label_column: str,
    id_columns: tuple[str, ...],
    engine: str,
    ray_address: str | None,
) -> None:
    """Score a file of images or texts with a model and write one result row per input."""
    from ..conversions import PRIORITY_HEADER
    from ..retry import RetryPolicy
    from .inputs import TableColumns
    from .outputs import output_format
    from .report import summary_lines
    from .score_job import JobError, ScoreOptions, run_score

    # A header rather than the native field: one way for every protocol and engine (v2, Ray).
    headers = {**connection.call_headers(), PRIORITY_HEADER: priority}
    columns = TableColumns(
        text=text_column, image=image_column, label=label_column, pixel_prefix=pixel_prefix, ids=id_columns
    )
    if engine == "ray":
        from .score_ray import RayScoreOptions, run_ray_score

        refuse_local_only(
            labels=labels_path, resume=resume, v2=protocol == "v2", tls=connection.credentials()
        )
        ray_options = RayScoreOptions(
            target=target,
            model=model,
            input=str(input_path),
            output=output_path,
            address=ray_address,
            columns=columns,
            summary_json=summary_json,
            top_k=top_k,
            batch_size=batch_size,
            concurrency=in_flight,
            timeout=timeout,
            headers=headers,
            max_attempts=max_attempts,
            max_backoff=max_backoff,
            limit=limit,
        )
        try:
            ray_summary = run_ray_score(ray_options)
        except JobError as exc:
            raise FatalError(str(exc)) from None
        for line in summary_lines(ray_summary):
            click.echo(line)
        sys.exit(1 if ray_summary.failed else 0)
    try:
        output_format(output_path)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--output") from None
    options = ScoreOptions(
        model=model,
        input=input_path,
        output=output_path,
        target=target,
        labels=labels_path,
        summary_json=summary_json,
        top_k=top_k,
        limit=limit,
        batch_size=batch_size,
        in_flight=in_flight,
        timeout=timeout,
        headers=headers,
        credentials=connection.credentials(),
        protocol=protocol,
        retry=RetryPolicy(
            max_attempts=max_attempts, initial_backoff=min(0.1, max_backoff), max_backoff=max_backoff
        ),
        resume=resume,
        columns=columns,
    )
    try:
        summary = run_score(options)
    except JobError as exc:
        raise FatalError(str(exc)) from None
    for line in summary_lines(summary):
        click.echo(line)
    sys.exit(1 if summary.failed else 0)


def refuse_local_only(*, labels: Path | None, resume: bool, v2: bool, tls: object) -> None:
    """Options the Ray engine does not have: a usage error rather than an option silently ignored."""
    given = {"--labels (a Ray job reads a label column)": labels, "--resume": resume, "--protocol v2": v2}
    given["TLS options"] = tls is not None
    for name, value in given.items():
        if value:
            raise click.UsageError(f"{name} works with --engine local only")
