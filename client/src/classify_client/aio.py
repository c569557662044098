"""The asyncio client: ``AsyncClient`` has the methods of ``Client`` as coroutines (grpc.aio).

A thin shell over ``core.ClientCore``, like ``Client``: this module only awaits the calls.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from typing import TypeVar

import grpc
import grpc.aio
import numpy as np

from .conversions import merge_results, result_from_response
from .core import ClassifyPlan, ClientCore, UnaryCall
from .errors import ClassifyError
from .explanations import ExplainResult
from .settings import UNSET, Timeout
from .streaming import StreamSession, reply_from_proto
from .types import ClassifyResult, ModelInfo, ModelMetadata, StreamReply, StreamRequest
from .wire.proto.classify.v1 import classify_pb2

T = TypeVar("T")


class AsyncClient(ClientCore):
    """A grpc.aio connection to a Classify server; see ``Client`` for the meaning of every argument.

    Create it inside a running event loop (grpc.aio channels belong to the loop that made them);
    ``async with AsyncClient(target) as client:`` closes it.
    """

    _transport = grpc.aio

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    # -- Classify ---------------------------------------------------------------------------------------

    async def classify(
        self,
        model: str,
        *,
        images: np.ndarray | None = None,
        texts: Iterable[str] | None = None,
        top_k: int = 1,
        version: int | None = None,
        return_probabilities: bool = False,
        timeout: Timeout = UNSET,
        headers: Mapping[str, str] | None = None,
        version_label: str | None = None,
        priority: str | None = None,
    ) -> ClassifyResult:
        """Classify N images or N texts with one model; one prediction per item, in input order."""
        plan = self._classify_plan(
            model,
            images=images,
            texts=texts,
            top_k=top_k,
            version=version,
            return_probabilities=return_probabilities,
            timeout=timeout,
            headers=headers,
            version_label=version_label,
            priority=priority,
        )
        first = await self._call_classify(plan.first_request(), plan)
        if len(plan.bounds) == 1:
            return first
        semaphore = asyncio.Semaphore(self.in_flight)

        async def chunk(start: int, stop: int) -> ClassifyResult:
            async with semaphore:  # requests are built only when sent: memory stays bounded too
                return await self._call_classify(plan.request(start, stop, first.version), plan)

        tasks = [asyncio.ensure_future(chunk(start, stop)) for start, stop in plan.later_bounds()]
        try:
            rest = await asyncio.gather(*tasks)
        finally:
            for task in tasks:  # only unfinished when a chunk failed: do not leave work running
                task.cancel()
        return merge_results([first, *rest])

    async def _call_classify(
        self, request: classify_pb2.ClassifyRequest, plan: ClassifyPlan
    ) -> ClassifyResult:
        send = self._classify_sender(request, plan.metadata)
        return result_from_response(await self._retrier.call_async(send, plan.deadline))

    # -- Streaming --------------------------------------------------------------------------------------

    async def classify_stream(
        self,
        requests: Iterable[StreamRequest] | AsyncIterable[StreamRequest],
        *,
        timeout: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> AsyncIterator[StreamReply]:
        """Send requests on one ClassifyStream call; yield one reply per request (see Client)."""
        session, call = self._open_stream(requests, StreamSession.outgoing_async, timeout, headers)
        try:
            async for response in call:
                yield reply_from_proto(response)
        except grpc.RpcError as error:
            raise session.failure(error) from None
        finally:
            call.cancel()
        session.raise_local_error()

    async def explain(
        self,
        model: str,
        images: np.ndarray | None = None,
        texts: Iterable[str] | None = None,
        *,
        version: int | None = None,
        target: str | int | None = None,
        top_k: int = 1,
        method: str = "auto",
        steps: int = 0,
        timeout: Timeout = UNSET,
        headers: Mapping[str, str] | None = None,
    ) -> ExplainResult:
        """Why the model answered what it did: per-pixel maps (images) or per-token scores (texts).

        ``target`` (a label or an index) is the class to explain for every item; without it each item's
        top class, or its ``top_k`` classes. ``method``: "auto" (the model's best), "votes",
        "integrated_gradients" or "occlusion"; ``steps``: integrated gradients' steps (0: the default, 32).
        """
        options = {"version": version, "target": target, "top_k": top_k, "method": method, "steps": steps}
        return await self._unary(self._explain_call(model, (images, texts), options, timeout, headers))

    # -- Models and health ------------------------------------------------------------------------------

    async def models(
        self, *, timeout: Timeout = UNSET, headers: Mapping[str, str] | None = None
    ) -> list[ModelInfo]:
        """The models the server answers with, newest ready version of each."""
        return await self._unary(self._models_call(timeout, headers))

    async def load_model(
        self, model: str, *, timeout: Timeout = UNSET, headers: Mapping[str, str] | None = None
    ) -> ModelInfo:
        """Load (or reload) a model from the server's repository now; serves it again after an unload."""
        return await self._unary(self._load_model_call(model, timeout, headers))

    async def unload_model(
        self, model: str, *, timeout: Timeout = UNSET, headers: Mapping[str, str] | None = None
    ) -> ModelInfo:
        """Stop serving a model (queued requests finish) until ``load_model``."""
        return await self._unary(self._unload_model_call(model, timeout, headers))

    async def set_version_label(
        self,
        model: str,
        label: str,
        version: int,
        *,
        timeout: Timeout = UNSET,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, int]:
        """Point ``label`` of ``model`` at a loaded ``version`` (0 removes it); every label afterwards."""
        return await self._unary(self._set_version_label_call(model, label, version, timeout, headers))

    async def metadata(
        self,
        model: str,
        version: int | None = None,
        *,
        timeout: Timeout = UNSET,
        headers: Mapping[str, str] | None = None,
    ) -> ModelMetadata:
        """Task, labels, input spec, metrics and versions of a model (newest ready version by default)."""
        return await self._unary(self._metadata_call(model, version, timeout, headers))

    async def health(
        self, service: str = "", *, timeout: Timeout = UNSET, headers: Mapping[str, str] | None = None
    ) -> str:
        """ "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN" or "UNKNOWN" for the server ("") or a model name.

        Raises UnavailableError when the server cannot be reached.
        """
        return await self._unary(self._health_call(service, timeout, headers))

    async def wait_until_ready(
        self,
        model: str | None = None,
        *,
        timeout: float = 60.0,
        poll_interval: float = 0.2,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Poll health until the server (or ``model``) is SERVING; raise DeadlineExceededError if not in time.

        An unreachable server counts as not ready yet: this is what scripts call right after starting one.
        """
        poll = self._readiness_poll(model, timeout, poll_interval)
        while True:
            try:
                status = await self.health(poll.service, timeout=poll.check_timeout(), headers=headers)
            except ClassifyError as error:
                status = poll.describe(error)
            if poll.ready(status):
                return
            await asyncio.sleep(poll.interval)

    async def _unary(self, call: UnaryCall[T]) -> T:
        try:
            answer = await call.retrier.call_async(call.send, call.deadline)
        except ClassifyError as error:
            return call.recover(error)
        return call.read(answer)
