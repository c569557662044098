"""`classify bench`: throughput and latency under load (the load itself is in ``load_generator``)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .common import Connection, FatalError, target_option


def parse_concurrency(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise click.BadParameter(f"expected positive integers separated by commas, got {text!r}")
    return values


@click.command()
@target_option
@click.option("--model", required=True, help="Model to load, e.g. mnist-cnn.")
@click.option(
    "--batch-size", type=click.IntRange(min=1), default=1, show_default=True, help="Rows per request."
)
@click.option(
    "--concurrency",
    default="1",
    show_default=True,
    help="Requests in flight; a comma list (1,4,16,64) runs a sweep. With --rate: the most outstanding.",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    help="Seconds measured per step (after --warmup).",
)
@click.option(
    "--requests", "request_count", type=click.IntRange(min=1), help="Requests per step instead of --duration."
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    help="Open loop: send this many requests per second whatever the answers do.",
)
@click.option(
    "--warmup",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="Seconds of unmeasured load before each step.",
)
@click.option(
    "--input",
    "input_path",
    type=click.Path(exists=True, path_type=Path),
    help="Real data (any format `score` reads); default: generated inputs of the model's kind.",
)
@click.option(
    "--version", "model_version", type=click.IntRange(min=1), help="Model version (default newest)."
)
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=30.0, show_default=True)
@click.option(
    "--protocol",
    type=click.Choice(["native", "v2"]),
    default="native",
    show_default=True,
    help="native classify.v1 Classify, or KServe V2 ModelInfer.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON instead of a table.")
@click.pass_obj
def bench(
    connection: Connection,
    *,
    target: str,
    model: str,
    batch_size: int,
    concurrency: str,
    duration: float,
    request_count: int | None,
    rate: float | None,
    warmup: float,
    input_path: Path | None,
    model_version: int | None,
    timeout: float,
    protocol: str,
    as_json: bool,
) -> None:
    """Measure throughput and latency under load, with the server's own batching figures."""
    import asyncio

    from ..errors import ClassifyError, describe_for_target
    from . import load_generator as load
    from .bench_report import as_json as results_json
    from .bench_report import print_table

    levels = parse_concurrency(concurrency)
    try:
        with connection.client(target, 10) as client:
            metadata = client.metadata(model, model_version)
    except ClassifyError as exc:
        raise FatalError(describe_for_target(exc, target)) from None
    try:
        pool = (
            load.file_inputs(input_path, max(batch_size, 256))
            if input_path
            else load.generated_inputs(metadata.input.kind, max(batch_size, 256))
        )
    except ValueError as exc:
        raise FatalError(str(exc)) from None
    specs = [
        load.LoadSpec(
            level, duration=duration, requests=request_count, rate=rate, warmup=warmup, timeout=timeout
        )
        for level in levels
    ]
    results = asyncio.run(
        load.benchmark(
            target,
            model,
            pool=pool,
            batch_size=batch_size,
            specs=specs,
            version=model_version,
            headers=connection.call_headers(),
            credentials=connection.credentials(),
            protocol=protocol,
        )
    )
    if as_json:
        click.echo(results_json(model, target, results))
    else:
        print_table(model, target, results)
    sys.exit(1 if any(r.errors for r in results) else 0)
