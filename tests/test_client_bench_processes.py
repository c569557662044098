"""`classify bench --processes N`: the load from N spawned worker processes against the real server,
merged into one step per level (exact percentiles over all latencies, the workers' CPU summed, the
server's statistics read once around the shared window)."""

from __future__ import annotations

import json

import pytest
from conftest import ServerProcess, run_cli

from classify_client.cli.bench_procs import split, worker_specs
from classify_client.cli.load_generator import LoadSpec


def bench(server: ServerProcess, *args: str, check: bool = True):
    return run_cli(
        "classify", "bench", "--target", server.target, "--http-target", server.http_url(), *args, check=check
    )


def test_shares_add_up_to_the_whole() -> None:
    assert split(5, [1, 1]) == [3, 2]
    assert split(31, [2, 1]) == [21, 10]
    assert split(1, [1, 1, 1]) == [1, 0, 0]
    closed, other = worker_specs(LoadSpec(5, requests=31, warmup=0.5, timeout=7), 2)
    assert (closed.concurrency, closed.requests, other.concurrency, other.requests) == (3, 19, 2, 12)
    assert (closed.warmup, closed.timeout, closed.rate) == (0.5, 7, None)
    shares = worker_specs(LoadSpec(5, duration=2, rate=100), 2)
    assert [s.rate for s in shares] == [60, 40]  # each worker's rate in proportion to its concurrency
    assert [s.duration for s in shares] == [2, 2]


def test_two_processes_measure_one_window(server: ServerProcess) -> None:
    result = bench(
        server,
        "--model", "mnist-softmax", "--processes", "2", "--concurrency", "4", "--batch-size", "2",
        "--duration", "2", "--warmup", "0.3", "--json",
    )  # fmt: skip
    (step,) = json.loads(result.stdout)["steps"]
    assert step["concurrency"] == 4
    assert step["errors"] == 0, step["error_codes"]
    assert step["requests"] > 0
    assert 2 <= step["seconds"] < 4  # one shared window of --duration, not two after each other
    assert 0 < step["p50_ms"] <= step["p90_ms"] <= step["p99_ms"] <= step["max_ms"]
    assert step["client_cpu_us_per_request"] > 0
    # Exact, not approximate: the server counts a request when it is queued, before answering it;
    # the window opens after every warmup request is answered and closes after every measured one is.
    assert step["server"]["requests"] == step["requests"]
    assert step["server"]["rows"] == 2 * step["requests"]


def test_uneven_shares_over_grpc_and_http_and_an_open_loop(server: ServerProcess) -> None:
    counted = bench(
        server,
        "--model", "mnist-softmax", "--processes", "2", "--concurrency", "3", "--requests", "31",
        "--protocol", "native,v2,http-binary", "--warmup", "0", "--json",
    )  # fmt: skip
    steps = json.loads(counted.stdout)["steps"]
    assert [s["protocol"] for s in steps] == ["native", "v2", "http-binary"]
    for step in steps:
        assert step["errors"] == 0, step["error_codes"]
        assert step["requests"] == 31 and step["server"]["requests"] == 31  # 21 + 10, none lost or doubled
    paced = bench(
        server,
        "--model", "mnist-softmax", "--processes", "2", "--concurrency", "4", "--rate", "100",
        "--duration", "1", "--warmup", "0", "--json",
    )  # fmt: skip
    (step,) = json.loads(paced.stdout)["steps"]
    # Every scheduled send is either answered or refused by the client's own cap (CLIENT_LIMIT).
    assert step["requests"] + step["errors"] == 100
    assert step["server"]["requests"] == step["requests"]


@pytest.mark.parametrize(
    ("processes", "concurrency", "expected"),
    [
        ("3", "1,4", "expected --processes at most 1"),
        ("0", "2", "expected a positive integer, got 0"),
    ],
)
def test_impossible_process_counts_are_usage_errors(
    server: ServerProcess, processes: str, concurrency: str, expected: str
) -> None:
    refused = bench(
        server, "--model", "mnist-softmax", "--processes", processes, "--concurrency", concurrency,
        check=False,
    )  # fmt: skip
    assert refused.returncode == 2
    assert expected in refused.stderr
    assert "--processes" in refused.stderr
    assert "Traceback" not in refused.stderr
