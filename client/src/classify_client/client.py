"""The synchronous client: ``Client(target).classify(model, images=...)`` and friends.

A thin shell over ``core.ClientCore``: requests, checks, channel set-up and error mapping live there;
this module only makes the blocking calls.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from typing import TypeVar

import grpc
import numpy as np

from .conversions import merge_results, result_from_response
from .core import ClassifyPlan, ClientCore, UnaryCall
from .errors import ClassifyError
from .explanations import ExplainResult
from .retry import RetryingFuture
from .settings import UNSET, Timeout
from .streaming import StreamSession, reply_from_proto
from .types import ClassifyResult, ModelInfo, ModelMetadata, StreamReply, StreamRequest
from .wire.proto.classify.v1 import classify_pb2

T = TypeVar("T")


class ClassifyFuture:
    """A Classify call in flight; ``result()`` waits for it (retrying per the client's policy) and raises
    ClassifyError on failure."""

    def __init__(self, future: RetryingFuture[classify_pb2.ClassifyResponse, ClassifyResult]) -> None:
        self._future = future

    def result(self, timeout: float | None = None) -> ClassifyResult:
        return self._future.result(timeout=timeout)

    def done(self) -> bool:
        return self._future.done()

    def cancel(self) -> bool:
        return self._future.cancel()


class Client(ClientCore):
    """A connection to a Classify server.

    ``timeout`` and ``headers`` are defaults for every call; each method also takes its own
    ``timeout=`` (seconds, or None for no deadline) and ``headers=`` (merged over the defaults, sent as
    gRPC metadata with lowercase keys). Inputs larger than ``chunk_rows`` rows are split into chunks,
    ``in_flight`` of them sent at once, and the answers joined in input order. Idempotent calls
    (Classify, ListModels, GetModelMetadata) that fail with UNAVAILABLE are sent again per ``retry``
    (see RetryPolicy; ``retry=None`` turns it off), within the call's timeout. ``max_message_bytes``
    bounds messages both ways; ``load_balancing="round_robin"`` spreads calls over every address a
    ``dns:///`` target resolves to; ``credentials`` (see ``tls_credentials``) connect with TLS; ``token``
    is sent as ``authorization: Bearer <token>``; ``options`` are extra gRPC channel arguments.
    """

    _transport = grpc

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    # -- Classify ---------------------------------------------------------------------------------------

    def classify(
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
        first = self._call_classify(plan.first_request(), plan)
        if len(plan.bounds) == 1:
            return first
        rest = self._classify_windowed(
            (plan.request(start, stop, first.version) for start, stop in plan.later_bounds()), plan
        )
        return merge_results([first, *rest])

    def classify_future(
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
    ) -> ClassifyFuture:
        """Start one Classify call without waiting (never split into chunks); see ``classify``."""
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
        return self._future(plan.whole_request(), plan)

    def _future(self, request: classify_pb2.ClassifyRequest, plan: ClassifyPlan) -> ClassifyFuture:
        def start(remaining: float | None) -> grpc.Future:
            return self._stub.Classify.future(request, timeout=remaining, metadata=plan.metadata)

        return ClassifyFuture(RetryingFuture(start, result_from_response, self._retrier, plan.deadline))

    def _call_classify(self, request: classify_pb2.ClassifyRequest, plan: ClassifyPlan) -> ClassifyResult:
        send = self._classify_sender(request, plan.metadata)
        return result_from_response(self._retrier.call(send, plan.deadline))

    def _classify_windowed(
        self, requests: Iterable[classify_pb2.ClassifyRequest], plan: ClassifyPlan
    ) -> list[ClassifyResult]:
        """Send requests with at most ``in_flight`` outstanding; answers in request order."""
        pending: deque[ClassifyFuture] = deque()
        results: list[ClassifyResult] = []
        try:
            for request in requests:
                pending.append(self._future(request, plan))
                if len(pending) >= self.in_flight:
                    results.append(pending.popleft().result())
            while pending:
                results.append(pending.popleft().result())
        finally:
            for future in pending:  # only left over when a chunk failed: do not leave work running
                future.cancel()
        return results

    # -- Streaming --------------------------------------------------------------------------------------

    def classify_stream(
        self,
        requests: Iterable[StreamRequest],
        *,
        timeout: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Iterator[StreamReply]:
        """Send requests on one ClassifyStream call; yield one reply per request as the server answers.

        A request the server rejects yields a reply with ``error`` set and the stream goes on. The
        timeout covers the whole stream and defaults to none, since streams carry long jobs. A request
        that fails validation here ends the stream after the replies to earlier requests, then raises.
        """
        session, call = self._open_stream(requests, StreamSession.outgoing, timeout, headers)
        try:
            for response in call:
                yield reply_from_proto(response)
        except grpc.RpcError as error:
            raise session.failure(error) from None
        finally:
            call.cancel()  # a no-op when the stream ended; stops the server when the caller broke off
        session.raise_local_error()

    def explain(
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
        return self._unary(self._explain_call(model, (images, texts), options, timeout, headers))

    # -- Models and health ------------------------------------------------------------------------------

    def models(
        self, *, timeout: Timeout = UNSET, headers: Mapping[str, str] | None = None
    ) -> list[ModelInfo]:
        """The models the server answers with, newest ready version of each."""
        return self._unary(self._models_call(timeout, headers))

    def load_model(
        self, model: str, *, timeout: Timeout = UNSET, headers: Mapping[str, str] | None = None
    ) -> ModelInfo:
        """Load (or reload) a model from the server's repository now; serves it again after an unload."""
        return self._unary(self._load_model_call(model, timeout, headers))

    def unload_model(
        self, model: str, *, timeout: Timeout = UNSET, headers: Mapping[str, str] | None = None
    ) -> ModelInfo:
        """Stop serving a model (queued requests finish) until ``load_model``."""
        return self._unary(self._unload_model_call(model, timeout, headers))

    def set_version_label(
        self,
        model: str,
        label: str,
        version: int,
        *,
        timeout: Timeout = UNSET,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, int]:
        """Point ``label`` of ``model`` at a loaded ``version`` (0 removes it); every label afterwards."""
        return self._unary(self._set_version_label_call(model, label, version, timeout, headers))

    def metadata(
        self,
        model: str,
        version: int | None = None,
        *,
        timeout: Timeout = UNSET,
        headers: Mapping[str, str] | None = None,
    ) -> ModelMetadata:
        """Task, labels, input spec, metrics and versions of a model (newest ready version by default)."""
        return self._unary(self._metadata_call(model, version, timeout, headers))

    def health(
        self, service: str = "", *, timeout: Timeout = UNSET, headers: Mapping[str, str] | None = None
    ) -> str:
        """ "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN" or "UNKNOWN" for the server ("") or a model name.

        Raises UnavailableError when the server cannot be reached.
        """
        return self._unary(self._health_call(service, timeout, headers))

    def wait_until_ready(
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
                status = self.health(poll.service, timeout=poll.check_timeout(), headers=headers)
            except ClassifyError as error:
                status = poll.describe(error)
            if poll.ready(status):
                return
            time.sleep(poll.interval)

    def _unary(self, call: UnaryCall[T]) -> T:
        try:
            answer = call.retrier.call(call.send, call.deadline)
        except ClassifyError as error:
            return call.recover(error)
        return call.read(answer)
