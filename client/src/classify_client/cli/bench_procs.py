"""``classify bench --processes N``: the load from N worker processes, measured as one window.

One Python process drives at most one core: the grpc.aio client and its event loop cost a few hundred
µs of CPU per request (~130 at concurrency 64, ~270 one at a time, more for big requests: docs/client.md),
so at high request rates a one-process load generator, sharing the machine's cores with the server it
measures, measures itself. With ``--processes N`` each of N workers has its own
channel (or HTTP connections) and runs its share of ``--concurrency`` (and of ``--rate`` and
``--requests``). Per step every worker warms up and reports ready; the parent then reads the server's
statistics and gives all of them one start time, so the measured window is the same for all; it reads
the statistics again when the last one is done. Raw latencies come back to the parent, so the
percentiles are exact over every request (an average of per-worker percentiles is not a percentile).

Workers are started with 'spawn': grpc's C core does not survive a fork once a channel exists, and the
parent has already asked the server for the model's metadata. A worker is handed picklable things only
(the serialized requests, the target, the command's Connection) and builds its channel itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection as Pipe
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from typing import Any

from .common import Connection
from .load_generator import (
    HTTP_PROTOCOLS,
    LoadGenerator,
    LoadLoop,
    LoadSpec,
    StepResult,
    grpc_requests,
    replace_duration,
    statistics_delta,
)

# How far ahead of "now" the parent sets the shared start: time for the message to reach every worker.
START_MARGIN_SECONDS = 0.05
STOP_JOIN_SECONDS = 10.0


class BenchProcessError(Exception):
    """A worker failed or died, or the HTTP side cannot be set up: one line for the user."""


@dataclass(frozen=True)
class WorkerPlan:
    """What one worker needs for one protocol and batch size; picklable (no channel, no SSL context)."""

    target: str
    protocol: str
    method: str  # the gRPC method; not used by the HTTP protocols
    payloads: Sequence[bytes]
    connection: Connection
    http_base_url: str | None = None


def split(total: int, weights: Sequence[int]) -> list[int]:
    """``total`` in whole units in proportion to ``weights``, summing to ``total`` exactly (the first
    parts take the remainder)."""
    whole = sum(weights)
    parts = [total * weight // whole for weight in weights]
    for i in range(total - sum(parts)):
        parts[i % len(parts)] += 1
    return parts


def worker_specs(spec: LoadSpec, processes: int) -> list[LoadSpec]:
    """Each worker's share of one step: concurrency split evenly, rate and requests in proportion."""
    shares = split(spec.concurrency, [1] * processes)
    requests = split(spec.requests, shares) if spec.requests is not None else [None] * processes
    return [
        LoadSpec(
            share,
            duration=spec.duration,
            requests=count,
            rate=spec.rate * share / spec.concurrency if spec.rate else None,
            warmup=spec.warmup,
            timeout=spec.timeout,
        )
        for share, count in zip(shares, requests, strict=True)
    ]


def _generator(plan: WorkerPlan) -> LoadLoop:
    """The worker's own load generator, as the one-process bench builds it."""
    headers, credentials = plan.connection.call_headers(), plan.connection.credentials()
    if plan.protocol in HTTP_PROTOCOLS:
        from .bench_http import HttpLoadGenerator, http_endpoint

        tls = plan.connection.tls_files if plan.connection.tls else None
        http = http_endpoint(plan.target, plan.http_base_url, tls)  # the SSL context is rebuilt here
        return HttpLoadGenerator(
            http, target=plan.target, requests=plan.payloads, headers=headers, credentials=credentials
        )
    return LoadGenerator(plan.target, plan.payloads, plan.method, headers, credentials)


async def _serve(pipe: Pipe) -> None:
    """Messages from the parent: a plan, then per step (spec, batch size) → warm up, "ready" → start
    time → measure, "done"; None ends. Blocking receives are fine: nothing is in flight then."""
    generator: LoadLoop | None = None
    try:
        while (message := pipe.recv()) is not None:
            if isinstance(message, WorkerPlan):
                if generator is not None:
                    await generator.close()
                generator = _generator(message)
                continue
            assert generator is not None, "a step before any plan"
            spec, batch_size = message
            if spec.warmup > 0:
                await generator.load(replace_duration(spec, spec.warmup), StepResult(spec, batch_size))
            pipe.send("ready")
            start_at = pipe.recv()
            if start_at is None:
                return
            await asyncio.sleep(max(0.0, start_at - time.monotonic()))
            result = StepResult(spec, batch_size)
            cpu_started = time.process_time()
            await generator.load(spec, result)
            cpu = time.process_time() - cpu_started  # all this process's threads, grpc's included
            pipe.send(("done", result.latencies_ns, dict(result.errors), cpu, time.monotonic()))
    finally:
        if generator is not None:
            await generator.close()


def worker_main(pipe: Pipe) -> None:
    """A worker process's entry point: failures go back to the parent as one line."""
    try:
        asyncio.run(_serve(pipe))
    except KeyboardInterrupt:
        pass  # Ctrl-C reaches the whole process group; the parent reports it
    except Exception as exc:  # anything: the parent must hear of it rather than wait for an answer
        with contextlib.suppress(OSError):  # the parent is gone: nobody to tell
            pipe.send(("error", f"{type(exc).__name__}: {exc}"))


class WorkerPool:
    """N spawned workers, each behind a pipe; every exchange goes to all of them and waits for all."""

    def __init__(self, processes: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._pipes: list[Pipe] = []
        self._processes: list[BaseProcess] = []
        for i in range(processes):
            ours, theirs = context.Pipe()
            process = context.Process(
                target=worker_main, args=(theirs,), name=f"classify-bench-{i}", daemon=True
            )
            process.start()
            theirs.close()  # only the worker holds its end now: its death is an EOF here
            self._pipes.append(ours)
            self._processes.append(process)

    def send(self, messages: Sequence[Any]) -> None:
        for i, (pipe, message) in enumerate(zip(self._pipes, messages, strict=True)):
            try:
                pipe.send(message)
            except OSError:  # its end is closed: the worker is gone
                self._processes[i].join(1)
                raise BenchProcessError(
                    f"bench worker {i} exited (code {self._processes[i].exitcode})"
                ) from None

    def receive(self) -> list[Any]:
        """One answer from every worker, in worker order; a worker that failed or died raises."""
        answers: dict[int, Any] = {}
        while len(answers) < len(self._pipes):
            waiting = [pipe for i, pipe in enumerate(self._pipes) if i not in answers]
            for ready in wait(waiting):
                i = next(i for i, pipe in enumerate(self._pipes) if pipe is ready)
                try:
                    answer = self._pipes[i].recv()
                except EOFError:
                    self._processes[i].join(1)
                    raise BenchProcessError(
                        f"bench worker {i} exited (code {self._processes[i].exitcode}) without an answer"
                    ) from None
                if isinstance(answer, tuple) and answer[0] == "error":
                    raise BenchProcessError(f"bench worker {i} failed: {answer[1]}")
                answers[i] = answer
        return [answers[i] for i in range(len(self._pipes))]

    def close(self, at_once: bool = False) -> None:
        """Ask every worker to stop, then make sure: a worker stuck in a call is terminated. ``at_once``
        (the run failed) terminates them without waiting for the rest of their window."""
        for pipe in self._pipes:
            with contextlib.suppress(OSError):  # a worker already gone needs no asking
                pipe.send(None)
        deadline = time.monotonic() + (0.0 if at_once else STOP_JOIN_SECONDS)
        for process in self._processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.terminate()
                process.join(1)
        for pipe in self._pipes:
            pipe.close()


async def run_step(
    workers: WorkerPool,
    statistics: LoadLoop,
    spec: LoadSpec,
    *,
    processes: int,
    batch_size: int,
    model: str,
    protocol: str,
) -> StepResult:
    """One step over all workers; the server's statistics are read once, around the shared window."""
    workers.send([(share, batch_size) for share in worker_specs(spec, processes)])
    await asyncio.to_thread(workers.receive)  # every warmup is over
    before = await statistics.server_statistics(model)
    cpu_started = time.process_time()
    start_at = time.monotonic() + START_MARGIN_SECONDS  # CLOCK_MONOTONIC: one clock for all processes
    # In open loop each worker keeps its own schedule; offset by one interval each, their sends
    # interleave instead of arriving N at a time.
    phase = 1.0 / spec.rate if spec.rate else 0.0
    workers.send([start_at + i * phase for i in range(processes)])
    answers = await asyncio.to_thread(workers.receive)
    parent_cpu = time.process_time() - cpu_started  # the parent only waits, but it is part of the tool
    after = await statistics.server_statistics(model)
    result = StepResult(spec, batch_size, protocol=protocol, server=statistics_delta(before, after))
    for _, latencies, errors, cpu, _ in answers:
        result.latencies_ns += latencies
        result.errors.update(errors)
        result.client_cpu_seconds += cpu
    result.client_cpu_seconds += parent_cpu
    result.seconds = max(ended for *_, ended in answers) - start_at
    return result


async def payloads_for(
    protocol: str,
    *,
    target: str,
    model: str,
    version: int | None,
    pool: Any,
    batch_size: int,
    connection: Connection,
    http: Any,
) -> tuple[str, list[bytes]]:
    """The gRPC method and the serialized requests, built once here for all workers."""
    headers = connection.call_headers()
    if protocol in HTTP_PROTOCOLS:
        from .bench_http import BenchSetupError, http_requests  # httpx only when HTTP is measured

        try:
            requests = await http_requests(
                http,
                model=model,
                version=version,
                pool=pool,
                batch_size=batch_size,
                protocol=protocol,
                headers=headers,
            )
        except BenchSetupError as exc:
            raise BenchProcessError(str(exc)) from None
        return "", requests
    return grpc_requests(
        target, model, version, pool=pool, batch_size=batch_size, protocol=protocol, headers=headers,
        credentials=connection.credentials(),
    )  # fmt: skip


async def run_all_in_processes(
    processes: int,
    connection: Connection,
    *,
    target: str,
    model: str,
    version: int | None,
    pool: Any,
    sizes: list[int],
    specs: list[LoadSpec],
    protocols: list[str],
    http: Any,
) -> list[StepResult]:
    """As ``bench.run_all``, over one set of ``processes`` workers kept for the whole run."""
    workers = WorkerPool(processes)
    # The statistics need no load channel of their own: a LoadLoop without payloads only asks for them.
    statistics = LoadLoop(target, [], connection.call_headers(), connection.credentials())
    results = []
    failed = True
    try:
        for protocol in protocols:
            for size in sizes:
                method, payloads = await payloads_for(
                    protocol,
                    target=target,
                    model=model,
                    version=version,
                    pool=pool,
                    batch_size=size,
                    connection=connection,
                    http=http,
                )
                base_url = http.base_url if http is not None else None
                plan = WorkerPlan(target, protocol, method, payloads, connection, base_url)
                workers.send([plan] * processes)
                for spec in specs:
                    results.append(
                        await run_step(
                            workers,
                            statistics,
                            spec,
                            processes=processes,
                            batch_size=size,
                            model=model,
                            protocol=protocol,
                        )
                    )
        failed = False
    finally:
        await statistics.close()
        workers.close(at_once=failed)
    return results
