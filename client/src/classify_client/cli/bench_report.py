"""Printing ``classify bench`` results: a table for people, JSON for machines."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from .load_generator import StepResult

COLUMNS = (
    ("protocol", "protocol", "{}"),
    ("batch_size", "batch", "{}"),
    ("concurrency", "conc", "{}"),
    ("rate", "rate/s", "{}"),
    ("requests_per_second", "req/s", "{:,.0f}"),
    ("rows_per_second", "rows/s", "{:,.0f}"),
    ("p50_ms", "p50 ms", "{:.2f}"),
    ("p90_ms", "p90 ms", "{:.2f}"),
    ("p99_ms", "p99 ms", "{:.2f}"),
    ("max_ms", "max ms", "{:.2f}"),
    ("errors", "errors", "{}"),
    ("client_cpu_us_per_request", "tool CPU µs/req", "{:,.0f}"),
)
SERVER_COLUMNS = (
    ("executions", "executions", "{:,}"),
    ("average_batch", "avg batch", "{:.1f}"),
    ("queue_ms_per_request", "queue ms", "{:.2f}"),
    ("compute_ms_per_execution", "compute ms", "{:.2f}"),
)


def _cell(value: Any, template: str) -> str:
    return "-" if value is None else template.format(value)


def print_table(
    model: str, target: str, results: Sequence[StepResult], console: Console | None = None
) -> None:
    console = console or Console(width=180)
    table = Table(title=f"{model} at {target}")
    for _, header, _ in (*COLUMNS, *SERVER_COLUMNS):
        table.add_column(header, justify="right")
    for result in results:
        facts = result.summary()
        cells = [_cell(facts[key], template) for key, _, template in COLUMNS]
        cells += [_cell(facts["server"].get(key), template) for key, _, template in SERVER_COLUMNS]
        table.add_row(*cells)
    console.print(table)
    for result in results:
        if result.errors:
            console.print(
                f"{result.protocol}, batch {result.batch_size}, concurrency {result.spec.concurrency}: "
                f"errors {dict(result.errors)}"
            )
    for line in ratios_to_native(results):
        console.print(line)
    console.print(
        "server columns come from GetModelStatistics over each step: executions are model runs; "
        "avg batch = rows per run; tool CPU is this load generator's own cost per answered request"
    )


def ratios_to_native(results: Sequence[StepResult]) -> list[str]:
    """Each other protocol's rows/s as a multiple of native gRPC's at the same batch and concurrency."""
    native = {
        (r.batch_size, r.spec.concurrency, r.spec.rate): r.summary()["rows_per_second"]
        for r in results
        if r.protocol == "native"
    }
    lines = []
    for result in results:
        base = native.get((result.batch_size, result.spec.concurrency, result.spec.rate))
        if result.protocol == "native" or not base:
            continue
        ratio = result.summary()["rows_per_second"] / base
        lines.append(
            f"{result.protocol} / native rows/s at batch {result.batch_size}, "
            f"concurrency {result.spec.concurrency}: {ratio:.2f}x"
        )
    return lines


def as_json(model: str, target: str, results: Sequence[StepResult]) -> str:
    return json.dumps({"model": model, "target": target, "steps": [r.summary() for r in results]}, indent=2)
