"""Prometheus metrics, served over HTTP by prometheus-client.

Request outcomes are counted as they happen (model, version, protocol, status code, latency). Batching
and model-state figures are read from the batchers' own counters when Prometheus scrapes, so the
request path pays nothing for them.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from classify_server.payload_log import PayloadLog
from classify_server.serving.batcher import TIME_BUCKETS, BatcherStats
from classify_server.serving.registry import LoadedModel, ModelRegistry
from classify_server.serving.response_cache import ResponseCache

UNKNOWN_MODEL = "_unknown"  # requests naming no loaded model: never one label value per typo
REQUEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
BATCHER_COUNTERS = {
    "requests": "Requests accepted into the model's queue",
    "rows": "Rows (images or texts) accepted into the model's queue",
    "executions": "Model executions (batches run)",
    "executed_rows": "Rows the model ran, padding included",
    "expired": "Requests dropped before compute because their deadline passed",
    "cancelled": "Requests dropped before compute because the caller went away",
    "rejected": "Requests refused on arrival: queue full, expected wait too long, or deadline too close",
    "failed": "Requests that failed in the model",
}
EXPLAIN_COUNTERS = {
    "requests": "Explain requests accepted into the model's explain queue",
    "items": "Items (images or texts) accepted to explain",
    "executions": "Explain executions (slices of explain work run beside the batches)",
    "rejected": "Explain requests refused on arrival: too much explain work queued",
    "expired": "Explain items dropped before compute because their deadline passed",
    "compute_seconds": "Seconds the model spent on explain executions",
}


class ServerMetrics:
    """One registry per server (not the global one), so several servers can live in one process."""

    def __init__(self, models: ModelRegistry) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._requests = Counter(
            "classify_requests",
            "Requests answered, by model, version, protocol, method (Classify, Explain) and gRPC status code",
            ["model", "version", "protocol", "method", "code"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "classify_request_seconds",
            "Time from a request reaching the data plane to its answer (queue and compute included)",
            ["model", "protocol", "method"],
            buckets=REQUEST_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(ModelCollector(models))
        # Bounded: model names are only loaded ones (or UNKNOWN_MODEL), codes and protocols are few.
        self._children: dict[tuple[str, int | None, str, str, str], tuple[Any, Any]] = {}

    def observe(
        self,
        model: str | None,
        version: int | None,
        protocol: str,
        code: str,
        seconds: float,
        *,
        method: str = "Classify",
    ) -> None:
        name = model or UNKNOWN_MODEL
        key = (name, version, protocol, method, code)
        children = self._children.get(key)
        if children is None:  # labels() costs a lock and a lookup per call: resolve each series once
            children = self._children[key] = (
                self._requests.labels(name, str(version or ""), protocol, method, code),
                self._latency.labels(name, protocol, method),
            )
        children[0].inc()
        children[1].observe(seconds)

    def watch_cache(self, cache: ResponseCache) -> None:
        """Export the answer cache's hits, misses, evictions and size, read at scrape time."""
        self.registry.register(CacheCollector(cache))

    def watch_payload_log(self, payload_log: PayloadLog) -> None:
        """Export the payload log's written, dropped and failed entries, read at scrape time."""
        self.registry.register(PayloadLogCollector(payload_log))

    def serve(self, host: str, port: int) -> int:
        """Serve /metrics on ``host:port`` (0 picks a free port) from a daemon thread; returns the port."""
        try:
            server, _ = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise RuntimeError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from exc
        return int(server.server_port)


class ModelCollector(Collector):
    """Batching counters, queue depth, time histograms and model states, read at scrape time."""

    def __init__(self, models: ModelRegistry) -> None:
        self._models = models

    def collect(self) -> Iterator[Metric]:
        loaded = self._models.loaded()
        yield from batcher_counters(loaded)
        yield from explain_counters(loaded)
        queued = GaugeMetricFamily("classify_queue_rows", "Rows waiting in the model's queue", labels=LABELS)
        batch = HistogramMetricFamily("classify_batch_size", "Rows per model execution", labels=LABELS)
        queue = HistogramMetricFamily(
            "classify_queue_seconds", "Time requests waited in the queue", labels=LABELS
        )
        compute = HistogramMetricFamily(
            "classify_compute_seconds", "Time of one model execution", labels=LABELS
        )
        load = GaugeMetricFamily(
            "classify_model_load_seconds", "Seconds to load and warm the version", labels=LABELS
        )
        for model in loaded:
            labels, stats = model_labels(model), model.batcher.stats
            queued.add_metric(labels, model.batcher.queued_rows)
            batch.add_metric(labels, size_buckets(stats), sum_value=stats.executed_rows)
            queue.add_metric(labels, time_buckets(stats.queue_time_counts), sum_value=stats.queue_seconds)
            compute.add_metric(
                labels, time_buckets(stats.compute_time_counts), sum_value=stats.compute_seconds
            )
            load.add_metric(labels, model.load_seconds)
        yield from (queued, batch, queue, compute, load)
        yield model_states(self._models)
        yield version_labels(self._models)


LABELS = ["model", "version"]


def model_labels(model: LoadedModel) -> list[str]:
    return [model.spec.name, str(model.spec.version)]


def batcher_counters(loaded: list[LoadedModel]) -> Iterator[Metric]:
    for field_name, help_text in BATCHER_COUNTERS.items():
        family = CounterMetricFamily(f"classify_batcher_{field_name}", help_text, labels=LABELS)
        for model in loaded:
            family.add_metric(model_labels(model), getattr(model.batcher.stats, field_name))
        yield family


def explain_counters(loaded: list[LoadedModel]) -> Iterator[Metric]:
    """Per version whose SavedModel has explain signatures (the others have no explain scheduler)."""
    explaining = [model for model in loaded if model.explainer is not None]
    for field_name, help_text in EXPLAIN_COUNTERS.items():
        family = CounterMetricFamily(f"classify_explain_{field_name}", help_text, labels=LABELS)
        for model in explaining:
            family.add_metric(model_labels(model), getattr(model.explainer.stats, field_name))
        yield family


def size_buckets(stats: BatcherStats) -> list[tuple[str, float]]:
    sizes = dict(stats.batch_sizes)
    cumulative = [sum(n for size, n in sizes.items() if size <= bound) for bound in BATCH_SIZE_BUCKETS]
    return [(str(b), c) for b, c in zip(BATCH_SIZE_BUCKETS, cumulative, strict=True)] + [
        ("+Inf", sum(sizes.values()))
    ]


def time_buckets(counts: list[int]) -> list[tuple[str, float]]:
    cumulative = list(itertools.accumulate(counts))
    return [(str(b), c) for b, c in zip(TIME_BUCKETS, cumulative, strict=False)] + [("+Inf", cumulative[-1])]


def model_states(models: ModelRegistry) -> Metric:
    family = GaugeMetricFamily(
        "classify_model_state", "1 for the state each known model version is in", labels=[*LABELS, "state"]
    )
    for state in models.states():
        for version in state.versions:
            family.add_metric([state.name, str(version.version), version.state], 1)
    return family


def version_labels(models: ModelRegistry) -> Metric:
    family = GaugeMetricFamily(
        "classify_version_label",
        "The version each version label names (value: the version)",
        labels=["model", "label"],
    )
    for model, named in models.labels.all().items():
        for label, version in named.items():
            family.add_metric([model, label], version)
    return family


class CacheCollector(Collector):
    """The answer cache of each loaded version (--cache-rows): its counters start at 0 with the version."""

    def __init__(self, cache: ResponseCache) -> None:
        self._cache = cache

    def collect(self) -> Iterator[Metric]:
        caches = self._cache.caches()
        for name, help_text in (
            ("hits", "Rows answered from the answer cache, skipping the batcher"),
            ("misses", "Rows looked up in the answer cache and sent to the model"),
            ("evictions", "Rows dropped from the answer cache to stay within --cache-rows / --cache-max-mb"),
        ):
            family = CounterMetricFamily(f"classify_cache_{name}", help_text, labels=LABELS)
            for cache in caches:
                family.add_metric(model_labels(cache.owner), getattr(cache.stats, name))
            yield family
        rows = GaugeMetricFamily("classify_cache_rows", "Rows in the answer cache", labels=LABELS)
        size = GaugeMetricFamily("classify_cache_bytes", "Estimated bytes of the answer cache", labels=LABELS)
        for cache in caches:
            rows.add_metric(model_labels(cache.owner), len(cache))
            size.add_metric(model_labels(cache.owner), cache.bytes)
        yield from (rows, size)


class PayloadLogCollector(Collector):
    def __init__(self, payload_log: PayloadLog) -> None:
        self._log = payload_log

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "classify_payload_log_entries",
            "Sampled payload log entries: written, dropped (buffer full) or failed (the sink refused them)",
            labels=["outcome"],
        )
        for outcome in ("written", "dropped", "failed"):
            family.add_metric([outcome], getattr(self._log.stats, outcome))
        yield family
