"""Printing ``classify bench`` results: a table for people, JSON for machines."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from .load_generator import StepResult

COLUMNS = (
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
    console = console or Console(width=160)
    batch = results[0].batch_size if results else 0
    table = Table(title=f"{model} at {target}, {batch} row(s) per request")
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
            console.print(f"concurrency {result.spec.concurrency}: errors {dict(result.errors)}")
    console.print(
        "server columns come from GetModelStatistics over each step: executions are model runs; "
        "avg batch = rows per run; tool CPU is this load generator's own cost per answered request"
    )


def as_json(model: str, target: str, results: Sequence[StepResult]) -> str:
    return json.dumps({"model": model, "target": target, "steps": [r.summary() for r in results]}, indent=2)
