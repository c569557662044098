"""`classify bench`: throughput and latency under load (the load itself is in ``load_generator``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from .common import Connection, FatalError, target_option

# --protocol names: the load generator's own, plus the short forms people type.
PROTOCOL_ALIASES = {
    "native": ("native",),
    "grpc": ("native",),
    "v2": ("v2",),
    "http": ("http-binary", "http-json"),
    "http-binary": ("http-binary",),
    "http-json": ("http-json",),
    "all": ("native", "v2", "http-binary", "http-json"),
}
PROTOCOL_HELP = (
    "What carries the load, a comma list run in turn and printed in one table: native (or grpc: "
    "classify.v1 Classify), v2 (KServe V2 ModelInfer over gRPC), http-binary / http-json (KServe V2 REST "
    "infer with binary-extension or JSON tensors; http: both), all: every one of them."
)


def parse_positive_list(text: str, option: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise click.BadParameter(
            f"expected positive integers separated by commas, got {text!r}", param_hint=option
        )
    return values


def parse_concurrency(text: str) -> list[int]:
    return parse_positive_list(text, "--concurrency")


def check_processes(processes: int, levels: list[int]) -> None:
    """Every process runs at least one request in flight, so there can be no more of them than the
    smallest --concurrency."""
    if processes < 1:
        raise click.BadParameter(f"expected a positive integer, got {processes}", param_hint="--processes")
    if processes > min(levels):
        raise click.BadParameter(
            f"{processes} processes need --concurrency of at least {processes} (each process keeps at "
            f"least one request in flight), got --concurrency {min(levels)}; expected --processes at most "
            f"{min(levels)}",
            param_hint="--processes",
        )


def parse_protocols(text: str) -> list[str]:
    """``grpc,http`` as the load generator's protocols in the order given, each once."""
    chosen: list[str] = []
    for part in (part.strip().lower() for part in text.split(",")):
        if part not in PROTOCOL_ALIASES:
            raise click.BadParameter(
                f"unknown protocol {part!r}; expected a comma list of {', '.join(PROTOCOL_ALIASES)}",
                param_hint="--protocol",
            )
        chosen += [name for name in PROTOCOL_ALIASES[part] if name not in chosen]
    return chosen


@click.command()
@target_option
@click.option("--model", required=True, help="Model to load, e.g. mnist-cnn.")
@click.option(
    "--batch-size",
    default="1",
    show_default=True,
    help="Rows per request; a comma list (1,128) measures each size in turn.",
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
@click.option("--protocol", default="native", show_default=True, help=PROTOCOL_HELP)
@click.option(
    "--http-target",
    help="The server's HTTP port, HOST:PORT or a URL, for the http protocols; default: --target's host, "
    "port 8501 (https with --tls-* options).",
)
@click.option(
    "--processes",
    type=int,
    default=1,
    show_default=True,
    help="Worker processes sharing the load (each its own channel and a share of --concurrency and "
    "--rate), so the tool is not limited to one core; 1: all in this process.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON instead of a table.")
@click.pass_obj
def bench(
    connection: Connection,
    *,
    target: str,
    model: str,
    batch_size: str,
    concurrency: str,
    duration: float,
    request_count: int | None,
    rate: float | None,
    warmup: float,
    input_path: Path | None,
    model_version: int | None,
    timeout: float,
    protocol: str,
    http_target: str | None,
    processes: int,
    as_json: bool,
) -> None:
    """Measure throughput and latency under load, with the server's own batching figures."""
    import asyncio

    from ..errors import ClassifyError, describe_for_target
    from . import load_generator as load
    from .bench_report import as_json as results_json
    from .bench_report import print_table

    levels = parse_concurrency(concurrency)
    sizes = parse_positive_list(batch_size, "--batch-size")
    protocols = parse_protocols(protocol)
    check_processes(processes, levels)
    try:
        with connection.client(target, 10) as client:
            metadata = client.metadata(model, model_version)
    except ClassifyError as exc:
        raise FatalError(describe_for_target(exc, target)) from None
    try:
        rows = max(*sizes, 256)
        pool = (
            load.file_inputs(input_path, rows)
            if input_path
            else load.generated_inputs(metadata.input.kind, rows)
        )
    except ValueError as exc:
        raise FatalError(str(exc)) from None
    specs = [
        load.LoadSpec(
            level, duration=duration, requests=request_count, rate=rate, warmup=warmup, timeout=timeout
        )
        for level in levels
    ]
    http = None
    if any(name in load.HTTP_PROTOCOLS for name in protocols):
        from .bench_http import http_endpoint

        http = http_endpoint(target, http_target, connection.tls_files if connection.tls else None)
    results = asyncio.run(
        run_all(
            connection,
            target=target,
            model=model,
            version=model_version,
            pool=pool,
            sizes=sizes,
            specs=specs,
            protocols=protocols,
            http=http,
            processes=processes,
        )
    )
    if as_json:
        click.echo(results_json(model, target, results))
    else:
        print_table(model, target, results)
    sys.exit(1 if any(r.errors for r in results) else 0)


async def run_all(
    connection: Connection,
    *,
    target: str,
    model: str,
    version: int | None,
    pool: Any,
    sizes: list[int],
    specs: list[Any],
    protocols: list[str],
    http: Any,
    processes: int = 1,
) -> list[Any]:
    """Every protocol, then every batch size, then every step: one connection per protocol and size."""
    from . import load_generator as load

    if processes > 1:
        from .bench_procs import BenchProcessError, run_all_in_processes

        try:
            return await run_all_in_processes(
                processes,
                connection,
                target=target,
                model=model,
                version=version,
                pool=pool,
                sizes=sizes,
                specs=specs,
                protocols=protocols,
                http=http,
            )
        except BenchProcessError as exc:
            raise FatalError(str(exc)) from None

    results = []
    for protocol in protocols:
        for size in sizes:
            common = {
                "model": model,
                "pool": pool,
                "batch_size": size,
                "specs": specs,
                "version": version,
                "headers": connection.call_headers(),
                "credentials": connection.credentials(),
            }
            if protocol in load.HTTP_PROTOCOLS:
                from .bench_http import BenchSetupError, http_benchmark  # httpx only when HTTP is measured

                try:
                    results += await http_benchmark(http, target=target, protocol=protocol, **common)
                except BenchSetupError as exc:
                    raise FatalError(str(exc)) from None
            else:
                results += await load.benchmark(target, protocol=protocol, **common)
    return results
