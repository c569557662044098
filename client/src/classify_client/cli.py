"""The ``classify`` command: score files, list models, check health.

Exit codes: 0 all good; 1 some rows failed (score) or not SERVING (health); 2 usage, whole-file or
connection problems. Heavy modules (grpc, numpy) are imported inside the commands so ``--help`` is fast.
"""

from __future__ import annotations

import os
import sys
import time
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
        from .settings import tls_credentials

        return tls_credentials(*self.tls_files)

    def call_headers(self) -> dict[str, str]:
        from .settings import with_token

        return with_token(self.headers, self.token)

    def client(self, target: str, timeout: float | None) -> Any:
        from .client import Client

        # Interactive commands answer at once: an unreachable server is reported, not waited for
        # (`classify health --wait` is the way to wait).
        return Client(
            target, timeout=timeout, headers=self.call_headers(), credentials=self.credentials(), retry=None
        )


@main.command()
@target_option
@click.option("--model", required=True, help="Model name, e.g. mnist-cnn or imdb-lstm.")
@click.option(
    "--input",
    "input_path",
    required=True,
    type=click.Path(path_type=Path),
    help="IDX images (.gz too), .npy, a folder of PNG/JPEG, JSON lines (.jsonl[.gz]) or text lines (.txt).",
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
    help="Results, one row per input in input order; .csv or .jsonl.",
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
    resume: bool,
    max_attempts: int,
    max_backoff: float,
) -> None:
    """Score a file of images or texts with a model and write one result row per input."""
    from .outputs import output_format
    from .report import summary_lines
    from .retry import RetryPolicy
    from .score_job import JobError, ScoreOptions, run_score

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
        headers=connection.call_headers(),
        credentials=connection.credentials(),
        protocol=protocol,
        retry=RetryPolicy(
            max_attempts=max_attempts, initial_backoff=min(0.1, max_backoff), max_backoff=max_backoff
        ),
        resume=resume,
    )
    try:
        summary = run_score(options)
    except JobError as exc:
        raise FatalError(str(exc)) from None
    for line in summary_lines(summary):
        click.echo(line)
    sys.exit(1 if summary.failed else 0)


@main.command()
@target_option
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True)
@click.pass_obj
def models(connection: Connection, target: str, timeout: float) -> None:
    """List the models the server answers with."""
    from rich.console import Console
    from rich.table import Table

    from .errors import ClassifyError, describe_for_target

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
    from .errors import ClassifyError, UnavailableError

    try:
        return client.metadata(name)
    except UnavailableError:
        raise
    except ClassifyError:  # e.g. a model that went away between the two calls: show what we have
        return None


@main.command()
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
    from .errors import ClassifyError, UnavailableError, describe_for_target
    from .health import SERVING

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


@main.command("load")
@target_option
@click.argument("model")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=300.0, show_default=True)
@click.pass_obj
def load_command(connection: Connection, target: str, model: str, timeout: float) -> None:
    """Load MODEL from the server's repository now (or serve it again after `unload`)."""
    _change_model(connection, target, timeout, lambda client: client.load_model(model))


@main.command("unload")
@target_option
@click.argument("model")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=60.0, show_default=True)
@click.pass_obj
def unload_command(connection: Connection, target: str, model: str, timeout: float) -> None:
    """Stop serving MODEL (queued requests finish first) until `load`."""
    _change_model(connection, target, timeout, lambda client: client.unload_model(model))


def _change_model(connection: Connection, target: str, timeout: float, change: Any) -> None:
    from .errors import ClassifyError, describe_for_target

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


def parse_concurrency(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise click.BadParameter(f"expected positive integers separated by commas, got {text!r}")
    return values


@main.command()
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

    from . import bench as load
    from .bench_report import as_json as results_json
    from .bench_report import print_table
    from .errors import ClassifyError, describe_for_target

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


if __name__ == "__main__":  # pragma: no cover - `python -m classify_client.cli`
    main(prog_name=os.path.basename(sys.argv[0]))
