"""Load phases of the reliability harness: soak, overload and recovery, built on `classify bench`'s parts.

Requests are serialized once (bench.serialized_requests) and sent as raw bytes; answers are checked by
status only. Soak uses bench's closed-loop LoadGenerator over a mix of models and batch sizes; overload
has its own open loop because it needs the latency of every outcome (how fast a shed request hears
RESOURCE_EXHAUSTED), not only of the successes.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
import numpy as np

from classify_client import Client
from classify_client.cli.load_generator import (
    CLASSIFY_METHOD,
    LoadGenerator,
    LoadSpec,
    generated_inputs,
    native_encoder,
    serialized_requests,
)
from classify_client.settings import channel_options
from classify_client.wire.proto.classify.v1 import classify_pb2


def mixed_payloads(target: str, batch_sizes: tuple[int, ...] = (1, 8, 32), seed: int = 0) -> list[bytes]:
    """Classify requests for every served model at every batch size, shuffled into one cycle."""
    with Client(target, timeout=10) as client:
        kinds = {info.name: client.metadata(info.name).input.kind for info in client.models()}
    payloads = []
    for model, kind in sorted(kinds.items()):
        _, encode = native_encoder(model, None)
        for batch_size in batch_sizes:
            payloads += serialized_requests(generated_inputs(kind, 256, seed), batch_size, encode)[:16]
    random.Random(seed).shuffle(payloads)
    return payloads


@dataclass
class SoakResult:
    requests: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    rss: list[int] = field(default_factory=list)  # after each segment
    fds: list[int] = field(default_factory=list)
    threads: list[int] = field(default_factory=list)
    p99_ms: float = 0.0

    @property
    def rss_growth(self) -> float:
        """Resident memory after the last segment relative to after the first (0.03 is 3%)."""
        return self.rss[-1] / self.rss[0] - 1 if len(self.rss) > 1 else 0.0


async def soak(
    target: str,
    total: int,
    concurrency: int,
    figures: Callable[[], tuple[int, int, int]],
    segments: int = 10,
) -> SoakResult:
    """``total`` requests in ``segments`` equal segments, sampling (rss, fds, threads) after each."""
    generator = LoadGenerator(target, mixed_payloads(target))
    result = SoakResult()
    latencies: list[int] = []
    started = time.perf_counter()
    try:
        for _ in range(segments):
            spec = LoadSpec(concurrency, duration=None, requests=total // segments, warmup=0, timeout=60)
            step = await generator.run(spec, 1, "mnist-cnn")
            result.requests += step.completed + sum(step.errors.values())
            result.errors.update(step.errors)
            latencies += step.latencies_ns
            rss, fds, threads = figures()
            result.rss.append(rss)
            result.fds.append(fds)
            result.threads.append(threads)
    finally:
        await generator.close()
    result.seconds = time.perf_counter() - started
    result.p99_ms = float(np.percentile(latencies, 99) / 1e6) if latencies else 0.0
    return result


@dataclass
class Outcomes:
    """Each answer's status and latency (from its scheduled send time)."""

    latencies_ms: dict[str, list[float]] = field(default_factory=dict)
    details: dict[str, str] = field(default_factory=dict)  # the first message seen for each status
    sent: int = 0
    seconds: float = 0.0

    def add(self, code: str, milliseconds: float, details: str = "") -> None:
        self.latencies_ms.setdefault(code, []).append(milliseconds)
        self.details.setdefault(code, details[:200])

    def count(self, code: str) -> int:
        return len(self.latencies_ms.get(code, []))

    def p99(self, code: str) -> float | None:
        values = self.latencies_ms.get(code)
        return float(np.percentile(values, 99)) if values else None

    @property
    def errors(self) -> int:
        return sum(len(v) for code, v in self.latencies_ms.items() if code != "OK")


class Sender:
    """Pre-serialized Classify requests over one grpc.aio channel, timing every outcome."""

    def __init__(self, target: str, model: str, kind: str, batch_size: int) -> None:
        self._channel = grpc.aio.insecure_channel(target, options=channel_options())
        self._call = self._channel.unary_unary(CLASSIFY_METHOD)
        self._stats = self._channel.unary_unary(
            "/classify.v1.Classifier/GetModelStatistics",
            request_serializer=classify_pb2.GetModelStatisticsRequest.SerializeToString,
            response_deserializer=classify_pb2.GetModelStatisticsResponse.FromString,
        )
        _, encode = native_encoder(model, None)
        self.model = model
        self.payloads = serialized_requests(generated_inputs(kind, 256), batch_size, encode)

    async def close(self) -> None:
        await self._channel.close()

    async def one(self, payload: bytes, timeout: float, start_ns: int, outcomes: Outcomes) -> None:
        code, details = "OK", ""
        try:
            await self._call(payload, timeout=timeout)
        except grpc.aio.AioRpcError as error:
            code, details = error.code().name, error.details() or ""
        outcomes.add(code, (time.perf_counter_ns() - start_ns) / 1e6, details)

    async def closed_loop(self, concurrency: int, requests: int, timeout: float) -> Outcomes:
        outcomes = Outcomes()
        budget = iter(range(requests))
        started = time.perf_counter()

        async def worker(offset: int) -> None:
            for i in budget:
                payload = self.payloads[(i + offset) % len(self.payloads)]
                await self.one(payload, timeout, time.perf_counter_ns(), outcomes)

        await asyncio.gather(*(worker(k) for k in range(concurrency)))
        outcomes.seconds = time.perf_counter() - started
        outcomes.sent = requests
        return outcomes

    async def open_loop(self, rate: float, seconds: float, timeout: float) -> Outcomes:
        """Send at ``rate`` per second whatever the answers do; latency from the scheduled time."""
        outcomes = Outcomes()
        tasks: set[asyncio.Task[None]] = set()
        origin = time.perf_counter_ns()
        count = int(rate * seconds)
        for i in range(count):
            scheduled = origin + int(i * 1e9 / rate)
            delay = (scheduled - time.perf_counter_ns()) / 1e9
            if delay > 0:
                await asyncio.sleep(delay)
            payload = self.payloads[i % len(self.payloads)]
            task = asyncio.create_task(self.one(payload, timeout, scheduled, outcomes))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        outcomes.sent = count
        outcomes.seconds = (time.perf_counter_ns() - origin) / 1e9
        if tasks:
            await asyncio.gather(*tasks)
        return outcomes

    async def statistics(self) -> classify_pb2.ModelStatistics:
        reply = await self._stats(classify_pb2.GetModelStatisticsRequest(model=self.model), timeout=10)
        return reply.models[-1]


@dataclass
class OverloadResult:
    capacity_rps: float
    unloaded_p99_ms: float
    offered_rps: float
    achieved_send_rps: float
    overload: Outcomes
    recovery: Outcomes
    expired: int  # dropped before compute: the deadline had passed when the batcher reached them
    cancelled: int  # dropped before compute: the caller had gone (its deadline passed, gRPC cancelled)
    rejected: int  # shed with RESOURCE_EXHAUSTED: the queue was full

    @property
    def accepted_p99_ratio(self) -> float | None:
        p99 = self.overload.p99("OK")
        return p99 / self.unloaded_p99_ms if p99 is not None and self.unloaded_p99_ms else None


async def overload(
    target: str,
    model: str,
    kind: str,
    *,
    batch_size: int,
    seconds: float,
    factor: float = 10.0,
    timeout: float = 2.0,
    probe_requests: int = 300,
    capacity_rps: float | None = None,
) -> OverloadResult:
    """Measure capacity and unloaded p99, offer ``factor`` times the capacity open loop, then probe again.

    ``capacity_rps`` reuses a capacity measured before (on a server with the default settings): a
    server that sheds early answers a closed loop mostly with refusals, and counting only its answers
    would understate what the model can do and so the overload offered.
    """
    sender = Sender(target, model, kind, batch_size)
    try:
        await sender.closed_loop(8, 50, 30)  # warm the channel and the model
        unloaded = await sender.closed_loop(1, probe_requests, 30)
        capacity = capacity_rps
        if capacity is None:
            saturated = await sender.closed_loop(32, max(200, probe_requests * 2), 30)
            capacity = saturated.count("OK") / saturated.seconds
        before = await sender.statistics()
        offered = await sender.open_loop(capacity * factor, seconds, timeout)
        after = await sender.statistics()
        recovery = await sender.closed_loop(1, probe_requests, 30)
    finally:
        await sender.close()
    return OverloadResult(
        capacity_rps=capacity,
        unloaded_p99_ms=unloaded.p99("OK") or 0.0,
        offered_rps=capacity * factor,
        achieved_send_rps=offered.sent / offered.seconds if offered.seconds else 0.0,
        overload=offered,
        recovery=recovery,
        expired=after.expired - before.expired,
        cancelled=after.cancelled - before.cancelled,
        rejected=after.rejected - before.rejected,
    )
