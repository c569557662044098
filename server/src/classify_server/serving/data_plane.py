"""The protocol-independent core: validate, resolve model and version, batch, pick the top classes.

Every protocol the server speaks is a thin servicer over this class, so they all share one behaviour.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from classify_client.wire.arrays import top_classes
from classify_server import tracing
from classify_server.errors import DeadlineExceededError, code_of
from classify_server.request_ids import current_priority
from classify_server.serving.batcher import BatcherStats
from classify_server.serving.explain_plane import ExplainCall, Explanation, explain
from classify_server.serving.registry import LoadedModel, ModelRegistry, ModelState
from classify_server.serving.repository import ModelSpec
from classify_server.serving.response_cache import ResponseCache, classify_cached
from classify_server.serving.scheduling import Priority, parse_priority
from classify_server.serving.validation import InputLimits, Payload, model_input

if TYPE_CHECKING:  # metrics imports prometheus-client; the data plane works without it
    from classify_server.metrics import ServerMetrics
    from classify_server.payload_log import PayloadLog

T = TypeVar("T")


@dataclass(frozen=True)
class ClassifyCall:
    model: str
    version: int | None
    payload: Payload | None
    top_k: int
    # Seconds the caller still waits, or None when it set no deadline.
    time_remaining: float | None = None
    # Which API the request came through, for metrics: native, kserve-v2, tf-serving.
    protocol: str = "native"
    # A version label instead of a version ("" : none); see serving/labels.py.
    version_label: str = ""
    # Queue priority (serving/scheduling.py); None: the caller's x-classify-priority, else normal.
    priority: Priority | None = None


@dataclass(frozen=True)
class Classification:
    spec: ModelSpec
    probabilities: np.ndarray  # float32, rows × classes
    top_indices: np.ndarray  # int, rows × k, best first
    top_scores: np.ndarray  # float32, rows × k


class DataPlane:
    def __init__(
        self,
        registry: ModelRegistry,
        limits: InputLimits,
        metrics: ServerMetrics | None = None,
        cache: ResponseCache | None = None,
        payload_log: PayloadLog | None = None,
    ) -> None:
        self.registry = registry
        self.limits = limits
        self._metrics = metrics
        self.cache = cache
        self.payload_log = payload_log

    async def classify(self, call: ClassifyCall) -> Classification:
        """Answer one request, counting its outcome and latency when metrics are on."""
        return await self._observed("Classify", call, lambda model: self._classify(model, call))

    async def explain(self, call: ExplainCall) -> Explanation:
        """Attributions for one request (explain_plane.py), counted as method "Explain"."""
        return await self._observed("Explain", call, lambda model: explain(model, call, self.limits))

    async def _observed(
        self,
        method: str,
        call: ClassifyCall | ExplainCall,
        answer: Callable[[LoadedModel], Awaitable[T]],
    ) -> T:
        started = time.perf_counter()
        spec: ModelSpec | None = None
        result: T | None = None
        code = "OK"
        error: BaseException | None = None
        traced = tracing.start_request(method, call) if tracing.state.enabled else None
        try:
            model = self.registry.resolve(call.model, call.version, call.version_label)
            spec = model.spec
            result = await answer(model)
            return result
        except BaseException as exc:
            code, error = code_of(exc).name, exc
            raise
        finally:
            seconds = time.perf_counter() - started
            if traced is not None:
                tracing.end_request(*traced, spec, code, error)
            if self._metrics is not None:
                self._metrics.observe(
                    spec.name if spec else None,
                    spec.version if spec else None,
                    call.protocol,
                    code,
                    seconds,
                    method=method,
                )
            # Payload logs record classifications; explanations are not sampled traffic.
            if self.payload_log is not None and isinstance(call, ClassifyCall):
                self.payload_log.offer(call, spec, code, seconds, result)  # type: ignore[arg-type]

    async def _classify(self, model: LoadedModel, call: ClassifyCall) -> Classification:
        batch = model_input(call.payload, model.spec, self.limits)
        deadline = None
        if call.time_remaining is not None:
            if call.time_remaining <= 0:
                raise DeadlineExceededError("the request's deadline had passed when it arrived")
            deadline = asyncio.get_running_loop().time() + call.time_remaining
        priority = call.priority if call.priority is not None else parse_priority(current_priority.get())
        cache = self.cache.rows_for(model) if self.cache is not None else None
        submit = model.batcher.submit
        if tracing.state.enabled:  # a queue span around the wait, which the execution span ends
            submit = tracing.traced_submit(submit, model.spec.name)
        if cache is None:
            probabilities = await submit(batch, deadline, priority)
        else:
            probabilities = await classify_cached(cache, batch, lambda rows: submit(rows, deadline, priority))
        indices, scores = top_classes(probabilities, call.top_k)
        return Classification(model.spec, probabilities, indices, scores)

    def statistics(self, name: str | None) -> list[tuple[ModelSpec, BatcherStats, int]]:
        """(spec, counters, rows queued now) of one model's versions, or of every loaded model."""
        models = self.registry.loaded()
        if name:
            self.registry.resolve(name, None)  # NOT_FOUND / UNAVAILABLE with the usual messages
            models = [model for model in models if model.spec.name == name]
        return [(m.spec, m.batcher.stats, m.batcher.queued_rows) for m in models]

    async def load_model(self, name: str) -> ModelState:
        return await self.registry.load_model(name)

    async def unload_model(self, name: str) -> ModelState:
        return await self.registry.unload_model(name)

    def model_states(self) -> list[ModelState]:
        return self.registry.states()

    def metadata(self, name: str, version: int | None, label: str = "") -> tuple[ModelSpec, list[int]]:
        spec = self.registry.resolve(name, version, label).spec
        return spec, self.registry.versions(name)

    def set_version_label(self, name: str, label: str, version: int) -> dict[str, int]:
        """Point a label of a loaded model at one of its loaded versions (0 removes it)."""
        self.registry.resolve(name, None)  # NOT_FOUND / UNAVAILABLE with the usual messages
        return self.registry.labels.set(name, label, version, self.registry.versions(name))

    def version_labels(self, name: str) -> dict[str, int]:
        return self.registry.labels.of(name)
