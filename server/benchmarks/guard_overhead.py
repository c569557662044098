"""Server CPU per call with and without the call guard (request ids, concurrency limit), in one run.

Two echo servers in their own processes serve the same trivial unary method, one registered directly and
one through ``GuardedRegistration``; a closed loop of asyncio calls hits each in turn, several rounds, and
the servers' CPU seconds per call are compared. No model runs, so this is the guard's cost against gRPC's
own per-call cost, the part of the request path it could slow down.

    python server/benchmarks/guard_overhead.py --seconds 5 --rounds 3 --concurrency 64
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import grpc

METHOD = "/bench.Echo/Call"


def serve(guarded: bool, port_file: str) -> None:
    from classify_server.call_guard import CallGuard, GuardedRegistration
    from classify_server.concurrency import ConcurrencyLimit

    async def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return request

    async def main() -> None:
        server = grpc.aio.server()
        handlers = {"Call": grpc.unary_unary_rpc_method_handler(echo)}
        target = GuardedRegistration(server, CallGuard(ConcurrencyLimit(0))) if guarded else server
        target.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("bench.Echo", handlers)])
        target.add_registered_method_handlers("bench.Echo", handlers)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        with open(port_file, "w") as out:
            out.write(str(port))
        await server.wait_for_termination()

    asyncio.run(main())


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def hammer(port: int, seconds: float, concurrency: int) -> int:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(METHOD)
        payload = b"x" * 784
        calls = 0
        end = time.monotonic() + seconds

        async def loop() -> None:
            nonlocal calls
            while time.monotonic() < end:
                await call(payload)
                calls += 1

        await asyncio.gather(*(loop() for _ in range(concurrency)))
        return calls


def start(guarded: bool, port_file: str) -> tuple[subprocess.Popen, int]:
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve", "guarded" if guarded else "plain", port_file]
    )
    path = Path(port_file)
    while not (path.exists() and path.read_text()):
        time.sleep(0.05)
    return process, int(path.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--serve", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0] == "guarded", args.serve[1])
        return
    stamp = f"/tmp/guard-overhead-{os.getpid()}"
    servers = {name: start(name == "guarded", f"{stamp}-{name}") for name in ("plain", "guarded")}
    per_call: dict[str, list[float]] = {name: [] for name in servers}
    try:
        for round_number in range(1, args.rounds + 1):
            for name, (process, port) in servers.items():
                before = cpu_seconds(process.pid)
                calls = asyncio.run(hammer(port, args.seconds, args.concurrency))
                micros = (cpu_seconds(process.pid) - before) / calls * 1e6
                per_call[name].append(micros)
                rate = calls / args.seconds
                print(f"round {round_number} {name:8s} {rate:8.0f} calls/s  {micros:6.1f} µs CPU/call")
    finally:
        for process, _ in servers.values():
            process.kill()
        for name in servers:
            os.remove(f"{stamp}-{name}")
    plain, guarded = statistics.median(per_call["plain"]), statistics.median(per_call["guarded"])
    print(f"median server CPU per call: plain {plain:.1f} µs, guarded {guarded:.1f} µs")
    print(f"ratio guarded / plain: {guarded / plain:.3f}")


if __name__ == "__main__":
    main()
