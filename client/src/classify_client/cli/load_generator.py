"""``classify bench``: load generation and measurement against a running server, like perf_analyzer.

The load generator keeps its own cost low so that it is not the bottleneck it measures: requests are
serialized once up front, sent as raw bytes through a generic gRPC method, and answers are checked by
status only, never parsed. Latency is taken around each call with a monotonic nanosecond clock; in open
loop it is taken from the *scheduled* send time, so a client that falls behind shows up as latency
instead of hiding it (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
import numpy as np

from ..conversions import Inputs, classify_request
from ..settings import channel_options
from ..wire.proto.classify.v1 import classify_pb2, classify_pb2_grpc
from .inputs import IMAGE, open_input

CLASSIFY_METHOD = "/classify.v1.Classifier/Classify"
# What ``classify bench --protocol`` measures: gRPC native Classify, gRPC KServe V2 ModelInfer, and KServe
# V2 REST infer with the binary tensor extension or with JSON tensors.
HTTP_PROTOCOLS = ("http-binary", "http-json")
PROTOCOLS = ("native", "v2", *HTTP_PROTOCOLS)
DISTINCT_REQUESTS = 64  # payloads cycled through, so the server does not see one request over and over
GENERATED_WORDS = [
    "film",
    "movie",
    "story",
    "acting",
    "plot",
    "great",
    "terrible",
    "boring",
    "wonderful",
    "awful",
    "brilliant",
    "dull",
    "moving",
    "funny",
    "beautiful",
    "weak",
    "strong",
    "characters",
    "director",
    "script",
    "ending",
    "music",
    "scenes",
    "performance",
    "love",
    "hate",
]


@dataclass(frozen=True)
class LoadSpec:
    """One step of a benchmark: how many requests in flight (or at what rate), for how long."""

    concurrency: int
    duration: float | None = 10.0
    requests: int | None = None
    rate: float | None = None  # requests/s, open loop; None is closed loop
    warmup: float = 1.0
    timeout: float = 30.0


@dataclass
class StepResult:
    spec: LoadSpec
    batch_size: int
    protocol: str = "native"
    seconds: float = 0.0
    latencies_ns: list[int] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    server: dict[str, float] = field(default_factory=dict)
    # CPU seconds this load generator spent during the step: shows whether the tool itself is a bottleneck.
    client_cpu_seconds: float = 0.0

    @property
    def completed(self) -> int:
        return len(self.latencies_ns)

    def summary(self) -> dict[str, Any]:
        latencies_ms = np.asarray(self.latencies_ns, dtype=np.float64) / 1e6
        percentiles = (
            dict(
                zip(
                    ("p50_ms", "p90_ms", "p99_ms"),
                    np.percentile(latencies_ms, [50, 90, 99]).tolist(),
                    strict=True,
                )
            )
            if len(latencies_ms)
            else {"p50_ms": None, "p90_ms": None, "p99_ms": None}
        )
        seconds = self.seconds or float("nan")
        return {
            "protocol": self.protocol,
            "concurrency": self.spec.concurrency,
            "rate": self.spec.rate,
            "batch_size": self.batch_size,
            "requests": self.completed,
            "errors": sum(self.errors.values()),
            "error_codes": dict(self.errors),
            "seconds": round(self.seconds, 3),
            "requests_per_second": self.completed / seconds,
            "rows_per_second": self.completed * self.batch_size / seconds,
            **percentiles,
            "max_ms": float(latencies_ms.max()) if len(latencies_ms) else None,
            "client_cpu_us_per_request": 1e6 * self.client_cpu_seconds / self.completed
            if self.completed
            else None,
            "server": self.server,
        }


def generated_inputs(kind: str, rows: int, seed: int = 0) -> Inputs:
    """Synthetic inputs of the model's kind: random digits-sized images, or random word salads."""
    rng = np.random.default_rng(seed)
    if kind == IMAGE:
        return Inputs(images=rng.integers(0, 256, size=(rows, 28, 28), dtype=np.uint8))
    texts = [" ".join(rng.choice(GENERATED_WORDS, size=int(rng.integers(20, 200)))) for _ in range(rows)]
    return Inputs(texts=texts)


def file_inputs(path: Path, rows: int) -> Inputs:
    """Up to ``rows`` usable rows of a file that ``classify score`` reads (bad rows are skipped)."""
    source = open_input(path)
    usable = [row for row in itertools.islice(source.rows(), rows * 2) if row.error is None][:rows]
    if not usable:
        raise ValueError(f"{path}: no usable rows to benchmark with")
    if source.kind == IMAGE:
        return Inputs(images=np.stack([row.image for row in usable]))
    return Inputs(texts=[row.text for row in usable])


P = TypeVar("P")  # one serialized request: bytes for gRPC, body and headers for HTTP
Encoder = Callable[[Inputs], bytes]


def native_encoder(model: str, version: int | None) -> tuple[str, Encoder]:
    return CLASSIFY_METHOD, lambda batch: classify_request(model, batch, version=version).SerializeToString()


def v2_encoder(
    target: str,
    model: str,
    version: int | None,
    headers: dict[str, str] | None,
    credentials: grpc.ChannelCredentials | None,
) -> tuple[str, Encoder]:
    """KServe V2 ModelInfer requests, with tensor names from the protocol's own ModelMetadata."""
    from .v2_protocol import MODEL_INFER_METHOD, V2Backend  # only here: it registers inference.* messages

    backend = V2Backend(
        target,
        model,
        version=version,
        labels=[],
        top_k=1,
        timeout=10,
        headers=headers,
        credentials=credentials,
    )
    try:
        return MODEL_INFER_METHOD, lambda batch: backend.request(batch).SerializeToString()
    finally:
        backend.close()  # the names are read; the encoder needs no connection


def serialized_requests(pool: Inputs, batch_size: int, encode: Callable[[Inputs], P]) -> list[P]:
    """DISTINCT_REQUESTS requests of ``batch_size`` rows each, cycling through the pool."""
    total = len(pool)
    payloads = []
    for i in range(DISTINCT_REQUESTS):
        indices = [(i * batch_size + j) % total for j in range(batch_size)]
        if pool.images is not None:
            batch = Inputs(images=pool.images[indices])
        else:
            batch = Inputs(texts=[(pool.texts or [])[k] for k in indices])
        payloads.append(encode(batch))
    return payloads


class LoadLoop:
    """Closed- and open-loop load over some transport, timed per call, with the server's statistics.

    Subclasses send one pre-serialized payload (``_send``); the statistics always come over gRPC
    (GetModelStatistics), whatever protocol carries the load: one batcher answers them all.
    """

    def __init__(
        self,
        target: str,
        payloads: Sequence[Any],
        headers: dict[str, str] | None = None,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        self._channel = (
            grpc.aio.secure_channel(target, credentials, options=channel_options(target=target))
            if credentials is not None
            else grpc.aio.insecure_channel(target, options=channel_options(target=target))
        )
        self._stats = classify_pb2_grpc.ClassifierStub(self._channel)
        self._payloads = payloads
        self._metadata = tuple((k.lower(), v) for k, v in (headers or {}).items()) or None

    async def close(self) -> None:
        await self._channel.close()

    async def _send(self, payload: Any, timeout: float) -> str | None:
        """Send one request; None when it succeeded, else the name of what went wrong."""
        raise NotImplementedError

    async def run(self, spec: LoadSpec, batch_size: int, model: str, protocol: str = "native") -> StepResult:
        if spec.warmup > 0:
            await self.load(replace_duration(spec, spec.warmup), StepResult(spec, batch_size))
        before = await self.server_statistics(model)
        result = StepResult(spec, batch_size, protocol=protocol)
        started, cpu_started = time.perf_counter(), time.process_time()
        await self.load(spec, result)
        result.seconds = time.perf_counter() - started
        result.client_cpu_seconds = time.process_time() - cpu_started
        after = await self.server_statistics(model)
        result.server = statistics_delta(before, after)
        return result

    async def load(self, spec: LoadSpec, result: StepResult) -> None:
        """One phase of load into ``result``; public for the worker processes, which run the phases of
        a step themselves (bench_procs.py)."""
        if spec.rate:
            await self._open_loop(spec, result)
        else:
            await self._closed_loop(spec, result)

    async def _closed_loop(self, spec: LoadSpec, result: StepResult) -> None:
        stop_at = time.perf_counter() + spec.duration if spec.duration else None
        budget = itertools.count() if spec.requests is None else iter(range(spec.requests))
        payloads = itertools.cycle(self._payloads)

        async def worker() -> None:
            for _ in budget:
                if stop_at is not None and time.perf_counter() >= stop_at:
                    return
                await self._one(next(payloads), spec.timeout, time.perf_counter_ns(), result)

        await asyncio.gather(*(worker() for _ in range(spec.concurrency)))

    async def _open_loop(self, spec: LoadSpec, result: StepResult) -> None:
        assert spec.rate is not None
        interval = 1.0 / spec.rate
        count = spec.requests if spec.requests is not None else int((spec.duration or 0) * spec.rate)
        payloads = itertools.cycle(self._payloads)
        in_flight: set[asyncio.Task[None]] = set()
        origin_ns = time.perf_counter_ns()
        for i in range(count):
            scheduled_ns = origin_ns + int(i * interval * 1e9)
            delay = (scheduled_ns - time.perf_counter_ns()) / 1e9
            if delay > 0:
                await asyncio.sleep(delay)
            if len(in_flight) >= spec.concurrency:
                result.errors["CLIENT_LIMIT"] += 1  # more outstanding than --concurrency allows
                continue
            task = asyncio.create_task(self._one(next(payloads), spec.timeout, scheduled_ns, result))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        if in_flight:
            await asyncio.gather(*in_flight)

    async def _one(self, payload: Any, timeout: float, start_ns: int, result: StepResult) -> None:
        error = await self._send(payload, timeout)
        if error is not None:
            result.errors[error] += 1
            return
        result.latencies_ns.append(time.perf_counter_ns() - start_ns)

    async def server_statistics(self, model: str) -> classify_pb2.ModelStatistics | None:
        try:
            reply = await self._stats.GetModelStatistics(
                classify_pb2.GetModelStatisticsRequest(model=model), timeout=10, metadata=self._metadata
            )
        except grpc.aio.AioRpcError:
            return None  # an older server, or another protocol: the client figures still stand
        return reply.models[-1] if reply.models else None


class LoadGenerator(LoadLoop):
    """Sends pre-serialized gRPC requests over one channel, through a generic method: nothing parsed."""

    def __init__(
        self,
        target: str,
        payloads: Sequence[bytes],
        method: str = CLASSIFY_METHOD,
        headers: dict[str, str] | None = None,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        super().__init__(target, payloads, headers, credentials)
        self._call = self._channel.unary_unary(method)  # bytes in, bytes out

    async def _send(self, payload: bytes, timeout: float) -> str | None:
        try:
            await self._call(payload, timeout=timeout, metadata=self._metadata)
        except grpc.aio.AioRpcError as error:
            return error.code().name
        return None


def replace_duration(spec: LoadSpec, seconds: float) -> LoadSpec:
    return LoadSpec(spec.concurrency, duration=seconds, rate=spec.rate, warmup=0, timeout=spec.timeout)


def statistics_delta(
    before: classify_pb2.ModelStatistics | None, after: classify_pb2.ModelStatistics | None
) -> dict[str, float]:
    """What the server did during the step: executions, average batch, queue and compute time."""
    if before is None or after is None or before.version != after.version:
        return {}
    requests = after.requests - before.requests
    executions = after.executions - before.executions
    return {
        "requests": requests,
        "rows": after.rows - before.rows,
        "executions": executions,
        "average_batch": (after.executed_rows - before.executed_rows) / executions if executions else 0.0,
        "queue_ms_per_request": 1e3 * (after.queue_seconds - before.queue_seconds) / requests
        if requests
        else 0.0,
        "compute_ms_per_execution": (
            1e3 * (after.compute_seconds - before.compute_seconds) / executions if executions else 0.0
        ),
        "rejected": after.rejected - before.rejected,
        "expired": after.expired - before.expired,
    }


async def run_steps(
    generator: LoadLoop, specs: Sequence[LoadSpec], batch_size: int, model: str, protocol: str
) -> list[StepResult]:
    """Each step in turn over one generator, which is closed afterwards."""
    try:
        return [await generator.run(spec, batch_size, model, protocol) for spec in specs]
    finally:
        await generator.close()


def grpc_requests(
    target: str,
    model: str,
    version: int | None,
    *,
    pool: Inputs,
    batch_size: int,
    protocol: str,
    headers: dict[str, str] | None,
    credentials: grpc.ChannelCredentials | None,
) -> tuple[str, list[bytes]]:
    """The gRPC method and the serialized requests of ``native`` or ``v2`` load, built once."""
    method, encode = (
        v2_encoder(target, model, version, headers, credentials)
        if protocol == "v2"
        else native_encoder(model, version)
    )
    return method, serialized_requests(pool, batch_size, encode)


async def benchmark(
    target: str,
    model: str,
    *,
    pool: Inputs,
    batch_size: int,
    specs: Sequence[LoadSpec],
    version: int | None = None,
    headers: dict[str, str] | None = None,
    credentials: grpc.ChannelCredentials | None = None,
    protocol: str = "native",
) -> list[StepResult]:
    """Run each step in turn over one gRPC channel (``native`` or ``v2``; HTTP: bench_http)."""
    method, requests = grpc_requests(
        target, model, version, pool=pool, batch_size=batch_size, protocol=protocol,
        headers=headers, credentials=credentials,
    )  # fmt: skip
    generator = LoadGenerator(target, requests, method, headers, credentials)
    return await run_steps(generator, specs, batch_size, model, protocol)
