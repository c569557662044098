"""OpenTelemetry tracing: a span per request, its queue wait, and the model execution it joined.

Off unless ``--otlp-endpoint`` is set. Off, every hook in the request path is behind
``if tracing.state.enabled``: no span, context or link object is made and the SDK is not even imported
(a no-op tracer would still build a span object and parse ``traceparent`` on every call).

On, the caller's W3C ``traceparent`` (and ``tracestate``) is taken from the gRPC metadata (call_guard.py,
every gRPC protocol) or the HTTP headers (http/guard.py) and kept in a context variable, so every request
of a stream is a child of the stream's caller. Each request then gets three spans:

- ``classify.request`` (kind SERVER): from the data plane taking the request to its answer; the child of
  the caller's span, or the root of a new trace when the caller sent no ``traceparent``.
- ``classify.queue``: child of the request, from entering the model's batcher queue to its execution
  starting (a response-cache hit of every row never queues, so has none).
- ``classify.execution``: one per model execution, which holds many callers' requests: it is the child
  of the first request in the batch (so a lone request's trace holds all three spans) and carries a span
  link to every request of the batch, each of which may belong to another trace.

Spans go to the OTLP/HTTP exporter in batches from a background thread (BatchSpanProcessor): a collector
that is slow or down costs dropped spans, never a waiting request.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from classify_server.request_ids import current_call

if TYPE_CHECKING:  # imported only once tracing is on (enable): the module is free to import when off
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.trace import Span, Tracer

    from classify_server.serving.data_plane import ClassifyCall
    from classify_server.serving.explain_plane import ExplainCall
    from classify_server.serving.repository import ModelSpec

log = logging.getLogger(__name__)

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
OTLP_TRACES_PATH = "/v1/traces"  # OTLP/HTTP's path for spans, added to an endpoint given without a path
DEFAULT_SERVICE_NAME = "classify-server"
REQUEST_SPAN, QUEUE_SPAN, EXECUTION_SPAN = "classify.request", "classify.queue", "classify.execution"
SPAN_NAMES = (REQUEST_SPAN, QUEUE_SPAN, EXECUTION_SPAN)

# The caller's context from traceparent/tracestate, for the whole call (a stream's messages share it).
_caller: ContextVar[Context | None] = ContextVar("trace_caller", default=None)
# The request span of the data-plane request being answered, which its queue span is a child of.
_request: ContextVar[Span | None] = ContextVar("trace_request", default=None)


@dataclass(eq=False)
class _Queued:
    """A request waiting in (or run from) a batcher: found again by its rows when its execution starts."""

    request: Span
    queue: Span
    queue_open: bool = True


# Keyed by id() of the rows array handed to the batcher: its queue entry, and every slice of a
# lower-priority request cut into background rows, keeps that id (Queued.origin), and the caller holds
# the array until the submit returns, so the id cannot be reused meanwhile. This
# keeps the batcher free of tracing fields: its only hook is at the execution step.
_queued: dict[int, _Queued] = {}


class _Pending(Protocol):
    rows: Any
    origin: int  # id() of the rows submitted, also on every slice cut off them


class _State:
    """Whether tracing is on (``state.enabled``: what every hook reads first), the tracer, and the few
    OpenTelemetry names the hooks use, imported by enable(): nothing of the SDK loads while off."""

    def __init__(self) -> None:
        self.enabled = False
        self.tracer: Tracer | None = None
        self.provider: TracerProvider | None = None

    def load(self) -> None:
        from opentelemetry import trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.propagator = TraceContextTextMapPropagator()
        self.server_kind = trace.SpanKind.SERVER
        self.in_context = trace.set_span_in_context
        self.link = trace.Link
        self._status, self._error = trace.Status, trace.StatusCode.ERROR

    def error_status(self, description: str) -> Any:
        return self._status(self._error, description)


state = _State()


def otlp_traces_url(endpoint: str) -> str:
    """The URL spans are POSTed to: ``endpoint`` as given, or with /v1/traces when it has no path.

    Raises ValueError saying what is wrong with an endpoint that is not an http(s) URL with a host.
    """
    try:
        parts = urlsplit(endpoint)
        port = parts.port  # parses it: a non-numeric or out-of-range port raises ValueError
    except ValueError as exc:
        raise ValueError(f"{endpoint!r} is not a URL ({exc}); expected e.g. http://collector:4318") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"{endpoint!r} is not an http(s) URL with a host; expected an OTLP/HTTP receiver such as "
            "http://collector:4318 (spans go to its /v1/traces)"
        )
    if port == 0:
        raise ValueError(f"{endpoint!r} names port 0; expected the collector's OTLP/HTTP port (4318)")
    if parts.path in ("", "/"):
        return endpoint.rstrip("/") + OTLP_TRACES_PATH
    return endpoint


def enable_otlp(endpoint: str, service_name: str) -> None:
    """Turn tracing on, exporting to an OTLP/HTTP receiver (``otlp_traces_url(endpoint)``)."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    exporter = OTLPSpanExporter(endpoint=otlp_traces_url(endpoint))
    enable(BatchSpanProcessor(exporter), service_name)
    log.info(
        "tracing on: spans to %s as service %r",
        otlp_traces_url(endpoint),
        service_name,
        extra={"event": "tracing_on", "otlp_endpoint": endpoint},
    )


def enable(processor: SpanProcessor, service_name: str = DEFAULT_SERVICE_NAME) -> None:
    """Turn tracing on with a span processor (OTLP export, or the SDK's in-memory exporter in tests).

    A provider of our own rather than OpenTelemetry's global one: the global can be set only once per
    process, and tests turn tracing on and off.
    """
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider

    disable()
    state.load()
    state.provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service_name}))
    state.provider.add_span_processor(processor)
    state.tracer = state.provider.get_tracer("classify_server")
    state.enabled = True


def disable() -> None:
    """Turn tracing off, exporting what is buffered first (at shutdown)."""
    state.enabled = False
    if state.provider is not None:
        state.provider.shutdown()
    state.tracer = state.provider = None
    _queued.clear()


def adopt_metadata(metadata: Iterable[tuple[str, str | bytes]] | None) -> None:
    """Keep the caller's trace context from a gRPC call's metadata (call_guard.py, when on)."""
    carrier: dict[str, str] = {}
    for key, value in metadata or ():
        if key in (TRACEPARENT, TRACESTATE):
            carrier[key] = value if isinstance(value, str) else value.decode("latin-1")
    _adopt(carrier)


def adopt_headers(headers: Iterable[tuple[bytes, bytes]]) -> None:
    """Keep the caller's trace context from an ASGI request's raw headers (http/guard.py, when on)."""
    carrier: dict[str, str] = {}
    for key, value in headers:
        if key in (b"traceparent", b"tracestate"):
            carrier[key.decode("latin-1")] = value.decode("latin-1")
    _adopt(carrier)


def _adopt(carrier: dict[str, str]) -> None:
    # A malformed traceparent extracts to an empty context: the request starts a new trace (W3C's rule).
    _caller.set(state.propagator.extract(carrier) if TRACEPARENT in carrier else None)


def start_request(method: str, call: ClassifyCall | ExplainCall) -> tuple[Span, Token[Span | None]]:
    """The request span, made current for this request's queue span (DataPlane, when on)."""
    assert state.tracer is not None
    span = state.tracer.start_span(
        REQUEST_SPAN,
        context=_caller.get(),
        kind=state.server_kind,
        attributes={
            "classify.method": method,
            "classify.model": call.model,
            "classify.protocol": call.protocol,
            "classify.request_id": current_call.get()[0],
        },
    )
    return span, _request.set(span)


def end_request(
    span: Span, token: Token[Span | None], spec: ModelSpec | None, code: str, error: BaseException | None
) -> None:
    _request.reset(token)
    if spec is not None:
        span.set_attribute("classify.version", spec.version)
    span.set_attribute("rpc.grpc.status_code", code)
    if error is not None:
        span.set_status(state.error_status(f"{code}: {error}"[:200]))
    span.end()


def traced_submit(submit: Callable[..., Awaitable[Any]], model: str) -> Callable[..., Awaitable[Any]]:
    """``submit`` (a batcher's) with a queue span around each call, found again by the execution hook."""

    async def submit_traced(rows: Any, *args: Any, **kwargs: Any) -> Any:
        request = _request.get()
        if request is None or state.tracer is None:  # tracing turned off while the request ran
            return await submit(rows, *args, **kwargs)
        queue = state.tracer.start_span(
            QUEUE_SPAN,
            context=state.in_context(request),
            attributes={"classify.model": model, "classify.rows": len(rows)},
        )
        queued = _queued[id(rows)] = _Queued(request, queue)
        try:
            return await submit(rows, *args, **kwargs)
        finally:
            del _queued[id(rows)]
            if queued.queue_open:  # refused, expired or cancelled before any execution took it
                queue.end()

    return submit_traced


def start_execution(model: str, batch: list[_Pending], inline: bool) -> Span | None:
    """The execution span of a batch, linked to each of its requests; ends their queue spans.

    The batcher's hook at its execution step (when on). A batch whose requests were not traced
    (submitted before tracing was turned on) gets no span.
    """
    if state.tracer is None:
        return None
    traced = [entry for pending in batch if (entry := _queued.get(pending.origin)) is not None]
    if not traced:
        return None
    for entry in traced:
        if entry.queue_open:
            entry.queue.end()
            entry.queue_open = False
    return state.tracer.start_span(
        EXECUTION_SPAN,
        context=state.in_context(traced[0].request),
        links=[state.link(entry.request.get_span_context()) for entry in traced],
        attributes={
            "classify.model": model,
            "classify.requests": len(batch),
            "classify.rows": sum(len(pending.rows) for pending in batch),
            "classify.inline": inline,
        },
    )


def end_execution(span: Span, error: BaseException | None = None) -> None:
    if error is not None:
        span.record_exception(error)
        span.set_status(state.error_status(str(error)[:200]))
    span.end()
