"""The gRPC fronts side by side in one run: a bare echo and classify-server on grpcio and on pygrpc-native.

For each front: a 784-byte echo server (one registered unary method, bytes in, bytes out: the front's own
ceiling) loaded by an asyncio client in another process, then `classify-server --grpc-front FRONT` loaded
by `classify bench` at batch 1 on mnist-cnn. Each line has calls/s, latency and the server process's CPU
per call (user + system time over the run / calls). Compare within one run, as ratios.

    python server/benchmarks/grpc_fronts.py --model-repository models --seconds 10 --concurrency 64
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import grpc
from serving_limits import BIN, require_front, serving

ECHO_METHOD = "/bench.Echo/Say"
ECHO_BYTES = 784  # one 28x28 uint8 image
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


async def serve_echo(front: str) -> None:
    """An echo server on a free loopback port; prints the port, stops when stdin closes."""

    async def say(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return request

    if front == "native":
        import pygrpc_native.aio

        server = pygrpc_native.aio.server()
    else:
        server = grpc.aio.server()
    service, method = ECHO_METHOD[1:].split("/")
    server.add_registered_method_handlers(service, {method: grpc.unary_unary_rpc_method_handler(say)})
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(port, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await server.stop(0)


async def load_echo(target: str, concurrency: int, seconds: float) -> None:
    """Closed-loop load on the echo: prints calls/s, p50 and p99 in ms."""
    payload = os.urandom(ECHO_BYTES)
    async with grpc.aio.insecure_channel(target) as channel:
        say = channel.unary_unary(ECHO_METHOD, _registered_method=True)
        await say(payload, timeout=10)  # connected before the clock starts
        latencies: list[float] = []
        end = time.perf_counter() + seconds

        async def caller() -> None:
            while (start := time.perf_counter()) < end:
                await say(payload, timeout=10)
                latencies.append(time.perf_counter() - start)

        began = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    latencies.sort()
    p50, p99 = (1e3 * latencies[int(q * (len(latencies) - 1))] for q in (0.5, 0.99))
    print(f"{len(latencies) / elapsed} {p50} {p99} {len(latencies)}", flush=True)


def echo_figures(front: str, concurrency: int, seconds: float) -> tuple[float, float, float, float]:
    """calls/s, p50 ms, p99 ms and server CPU µs per call of the echo on one front."""
    here = [sys.executable, __file__]
    server = subprocess.Popen(
        [*here, "echo-server", front], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        before = cpu_seconds(server.pid)
        out = subprocess.run(
            [*here, "echo-load", f"127.0.0.1:{port}", str(concurrency), str(seconds)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        used = cpu_seconds(server.pid) - before
    finally:
        server.communicate("", timeout=30)
    rate, p50, p99, calls = map(float, out)
    return rate, p50, p99, 1e6 * used / calls


def classify_bench(target: str, concurrency: int, seconds: float, warmup: float) -> dict:
    """One `classify bench` step, batch-1 mnist-cnn (its --json figures)."""
    result = subprocess.run(
        [str(BIN / "classify"), "bench", "--target", target, "--model", "mnist-cnn", "--batch-size", "1",
         "--concurrency", str(concurrency), "--duration", str(seconds), "--warmup", str(warmup), "--json"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode not in (0, 1):
        raise SystemExit(f"classify bench failed: {result.stderr}")
    return json.loads(result.stdout)["steps"][0]


def classify_figures(repository: Path, front: str, concurrency: int, seconds: float) -> tuple[float, ...]:
    """req/s, p50 ms, p99 ms, server CPU µs per request and the bench's own CPU µs per request."""
    with serving(repository, ["--grpc-front", front]) as server:
        require_front(server, front)
        classify_bench(server.target, concurrency, 2, 0)  # warm: first batches, inline timings
        # No warm-up inside the measured step, so the server's CPU over it is the counted requests'.
        before = cpu_seconds(server.pid)
        step = classify_bench(server.target, concurrency, seconds, 0)
        used = cpu_seconds(server.pid) - before
    return (
        step["requests_per_second"],
        step["p50_ms"],
        step["p99_ms"],
        1e6 * used / step["requests"],
        step.get("client_cpu_us_per_request") or 0.0,
    )


def row(name: str, *figures: str) -> str:
    return f"{name:<40}" + "".join(f" {figure:>15}" for figure in figures)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "echo-server":
        asyncio.run(serve_echo(sys.argv[2]))
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "echo-load":
        asyncio.run(load_echo(sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-repository", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=10.0, help="measurement time per figure")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--front", action="append", choices=("grpcio", "native"), default=None)
    args = parser.parse_args()
    fronts = args.front or ["grpcio", "native"]
    print(row("server", "calls/s", "p50 ms", "p99 ms", "server µs/call", "bench µs/call"))
    for front in fronts:
        rate, p50, p99, cpu = echo_figures(front, args.concurrency, args.seconds)
        print(
            row(
                f"echo {ECHO_BYTES} B, {front}", f"{rate:,.0f}", f"{p50:.2f}", f"{p99:.2f}", f"{cpu:,.0f}", ""
            )
        )
    for front in fronts:
        rate, p50, p99, cpu, client = classify_figures(
            args.model_repository, front, args.concurrency, args.seconds
        )
        name = f"classify-server mnist-cnn batch 1, {front}"
        figures = (f"{rate:,.0f}", f"{p50:.2f}", f"{p99:.2f}", f"{cpu:,.0f}", f"{client:,.0f}")
        print(row(name, *figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
