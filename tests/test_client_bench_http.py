"""`classify bench --protocol grpc,http`: the real load generator against the real server's HTTP port,
gRPC and KServe V2 REST (binary extension and JSON bodies) side by side in one report, in the clear and
over mutual TLS (its HTTP requests go out on its own keep-alive sockets, bench_wire.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import ServerProcess, copy_model, run_cli
from test_security import make_ca, make_signed

from classify_server.launcher import free_port


def bench(server: ServerProcess, *args: str, check: bool = True):
    return run_cli(
        "classify", "bench", "--target", server.target, "--http-target", server.http_url(), *args, check=check
    )


def test_http_rows_beside_grpc_rows_in_one_run(server: ServerProcess) -> None:
    result = bench(
        server,
        "--model", "mnist-softmax", "--protocol", "grpc,http", "--batch-size", "1,16",
        "--concurrency", "2", "--duration", "1", "--warmup", "0.2", "--json",
    )  # fmt: skip
    steps = json.loads(result.stdout)["steps"]
    assert [(s["protocol"], s["batch_size"]) for s in steps] == [
        ("native", 1),
        ("native", 16),
        ("http-binary", 1),
        ("http-binary", 16),
        ("http-json", 1),
        ("http-json", 16),
    ]
    for step in steps:
        assert step["errors"] == 0, step["error_codes"]
        assert step["requests"] > 0
        assert step["rows_per_second"] == pytest.approx(step["batch_size"] * step["requests_per_second"])
        # The HTTP load reaches the same batcher: its statistics count every HTTP request and row.
        assert step["server"]["requests"] == step["requests"]
        assert step["server"]["rows"] == step["requests"] * step["batch_size"]


def test_http_texts_and_the_table_with_ratios(server: ServerProcess) -> None:
    result = bench(
        server,
        "--model", "imdb-lstm", "--protocol", "native,http-binary", "--batch-size", "4",
        "--requests", "20", "--warmup", "0",
    )  # fmt: skip
    assert "http-binary" in result.stdout
    assert "http-binary / native rows/s at batch 4, concurrency 1:" in result.stdout


def test_bad_protocol_and_unreachable_http_port_are_one_line_errors(server: ServerProcess) -> None:
    unknown = bench(server, "--model", "mnist-softmax", "--protocol", "grpc,carrier-pigeon", check=False)
    assert unknown.returncode == 2
    assert "unknown protocol 'carrier-pigeon'" in unknown.stderr
    closed = run_cli(
        "classify", "bench", "--target", server.target, "--http-target", f"127.0.0.1:{free_port()}",
        "--model", "mnist-softmax", "--protocol", "http", "--requests", "1", "--warmup", "0",
        check=False,
    )  # fmt: skip
    assert closed.returncode == 2
    assert "cannot reach the HTTP port" in closed.stderr
    assert "Traceback" not in closed.stderr


def test_https_with_the_grpc_sides_certificates(
    private_server, quick_repository: Path, tmp_path: Path
) -> None:
    ca = make_ca(tmp_path, "bench-ca")
    server_cert = make_signed(tmp_path, "server", ca, "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    client_cert = make_signed(tmp_path, "client", ca, "extendedKeyUsage=clientAuth\n")
    repository = tmp_path / "models"
    copy_model(quick_repository, "mnist-softmax", repository)
    started = private_server(
        repository,
        "--tls-cert-file", server_cert[0], "--tls-key-file", server_cert[1], "--tls-client-ca-file", ca[0],
    )  # fmt: skip
    started.wait_serving()
    assert started.http_url().startswith("https://")
    result = run_cli(
        "classify", "--tls-ca", ca[0], "--tls-cert", client_cert[0], "--tls-key", client_cert[1],
        "bench", "--target", started.target, "--http-target", started.http_url(),
        "--model", "mnist-softmax", "--protocol", "http", "--batch-size", "8", "--concurrency", "3",
        "--requests", "30", "--warmup", "0", "--json",
    )  # fmt: skip
    steps = json.loads(result.stdout)["steps"]
    assert [s["protocol"] for s in steps] == ["http-binary", "http-json"]
    for step in steps:
        assert step["errors"] == 0, step["error_codes"]
        assert step["requests"] == 30 and step["server"]["rows"] == 30 * 8
