"""Tracing on the in-process server, its spans caught by the OpenTelemetry SDK's in-memory exporter.

A caller's W3C traceparent, sent over each gRPC protocol and HTTP, gives the request, queue and
execution spans in the caller's trace, parented right, the execution linked to the request; two callers
batched into one execution get one execution span linked to both.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import tensorflow as tf
from fake_serving import InProcessServer
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from classify_client import Client
from classify_client.wire.proto.inference import grpc_predict_v2_pb2 as v2
from classify_client.wire.proto.inference import grpc_predict_v2_pb2_grpc as v2_grpc
from classify_server import tracing

MODEL = "mnist-cnn"
IMAGES = np.random.default_rng(3).integers(0, 256, size=(1, 28, 28), dtype=np.uint8)


def traceparent(trace_id: int, span_id: int) -> str:
    return f"00-{trace_id:032x}-{span_id:016x}-01"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on for one test, each span exported as it ends; off again afterwards."""
    exporter = InMemorySpanExporter()
    tracing.enable(SimpleSpanProcessor(exporter), "classify-test")
    yield exporter
    tracing.disable()


def by_name(exporter: InMemorySpanExporter) -> dict[str, list[ReadableSpan]]:
    named: dict[str, list[ReadableSpan]] = {}
    for span in exporter.get_finished_spans():
        named.setdefault(span.name, []).append(span)
    return named


def call_native(server: InProcessServer, header: str) -> None:
    with Client(server.target, timeout=30) as client:
        assert client.classify(MODEL, images=IMAGES, headers={"traceparent": header}).version == 1


def call_kserve(server: InProcessServer, header: str) -> None:
    request = v2.ModelInferRequest(model_name=MODEL)
    request.inputs.add(name="images", datatype="UINT8", shape=list(IMAGES.shape))
    request.raw_input_contents.append(IMAGES.tobytes())
    with grpc.insecure_channel(server.target) as channel:
        stub = v2_grpc.GRPCInferenceServiceStub(channel)
        assert stub.ModelInfer(request, metadata=(("traceparent", header),), timeout=30).model_name == MODEL


def call_tfserving(server: InProcessServer, header: str) -> None:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(IMAGES))
    with grpc.insecure_channel(server.target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        reply = stub.Predict(request, metadata=(("traceparent", header),), timeout=30)
        assert reply.model_spec.version.value == 1


def call_http(server: InProcessServer, header: str) -> None:
    assert server.server is not None and server.server.http is not None
    reply = httpx.post(
        f"http://127.0.0.1:{server.server.http.port}/api/v1/models/{MODEL}:classify",
        json={"images": IMAGES.tolist()},
        headers={"traceparent": header},
        timeout=30,
    )
    assert reply.status_code == 200, reply.text


CALLS: dict[str, Callable[[InProcessServer, str], None]] = {
    "native": call_native,
    "kserve-v2": call_kserve,
    "tf-serving": call_tfserving,
    "http": call_http,
}


@pytest.mark.parametrize("protocol", CALLS)
def test_a_callers_traceparent_gives_three_spans_in_its_trace(
    protocol: str, spans: InMemorySpanExporter, fake_repository: Path, serve_in_process
) -> None:
    server = serve_in_process(fake_repository, "--http-port", "0").wait_started()
    trace_id, caller_span = 0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7
    CALLS[protocol](server, traceparent(trace_id, caller_span))

    named = by_name(spans)
    assert {name: len(found) for name, found in named.items()} == {
        tracing.REQUEST_SPAN: 1,
        tracing.QUEUE_SPAN: 1,
        tracing.EXECUTION_SPAN: 1,
    }
    (request,), (queue,), (execution,) = (named[name] for name in tracing.SPAN_NAMES)
    for span in (request, queue, execution):
        assert span.context.trace_id == trace_id, span.name
    assert request.parent is not None and request.parent.span_id == caller_span
    assert request.parent.is_remote
    assert queue.parent is not None and queue.parent.span_id == request.context.span_id
    assert execution.parent is not None and execution.parent.span_id == request.context.span_id
    assert [link.context.span_id for link in execution.links] == [request.context.span_id]
    assert request.attributes["classify.model"] == MODEL and request.attributes["classify.version"] == 1
    assert request.attributes["rpc.grpc.status_code"] == "OK"
    # The queue wait ends as the execution starts, and both lie within the request.
    assert request.start_time <= queue.start_time <= queue.end_time <= execution.start_time
    assert execution.end_time <= request.end_time
    assert request.resource.attributes["service.name"] == "classify-test"


def test_two_callers_batched_together_share_one_execution_linked_to_both(
    spans: InMemorySpanExporter, fake_repository: Path, serve_in_process
) -> None:
    # A batch of 2 that waits up to 10 s for its second row: the two calls run as one execution.
    server = serve_in_process(
        fake_repository, "--max-batch-size", "2", "--max-queue-delay-ms", "10000"
    ).wait_started()
    callers = {0x1111 + n: traceparent(0xABC0 + n, 0x1111 + n) for n in range(2)}
    threads = [threading.Thread(target=call_native, args=(server, header)) for header in callers.values()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    named = by_name(spans)
    assert len(named[tracing.REQUEST_SPAN]) == len(named[tracing.QUEUE_SPAN]) == 2
    (execution,) = named[tracing.EXECUTION_SPAN]
    requests = {span.parent.span_id: span for span in named[tracing.REQUEST_SPAN] if span.parent}
    assert set(requests) == set(callers)  # each request a child of its own caller, in its own trace
    assert {span.context.trace_id for span in requests.values()} == {0xABC0, 0xABC1}
    linked = {(link.context.trace_id, link.context.span_id) for link in execution.links}
    assert linked == {(span.context.trace_id, span.context.span_id) for span in requests.values()}
    assert execution.attributes["classify.requests"] == 2 and execution.attributes["classify.rows"] == 2
    # The execution belongs to the first request's trace; the link is what ties it to the other.
    assert execution.context.trace_id in {0xABC0, 0xABC1}


def test_a_request_without_a_valid_traceparent_starts_a_trace_of_its_own(
    spans: InMemorySpanExporter, fake_repository: Path, serve_in_process
) -> None:
    server = serve_in_process(fake_repository).wait_started()
    with Client(server.target, timeout=30) as client:
        client.classify(MODEL, images=IMAGES)
        client.classify(MODEL, images=IMAGES, headers={"traceparent": "00-zz-bad-01"})
    requests = by_name(spans)[tracing.REQUEST_SPAN]
    assert len(requests) == 2
    for request in requests:  # no usable caller context: each request is the root of a new trace
        assert request.parent is None
    assert requests[0].context.trace_id != requests[1].context.trace_id


def test_every_slice_of_a_low_priority_request_is_linked_to_it(
    spans: InMemorySpanExporter, fake_repository: Path, serve_in_process
) -> None:
    """A low request beside recent normal traffic runs in slices of --background-rows rows: each slice's
    execution span is linked to the request, though each slice is a new array."""
    server = serve_in_process(fake_repository, "--background-rows", "4").wait_started()
    rows = np.random.default_rng(5).integers(0, 256, size=(12, 28, 28), dtype=np.uint8)
    with Client(server.target, timeout=30) as client:
        client.classify(MODEL, images=IMAGES)  # normal traffic: for the next second, low runs in slices
        client.classify(MODEL, images=rows, priority="low", headers={"traceparent": traceparent(0xD0, 0xD1)})

    named = by_name(spans)
    (low_request,) = [span for span in named[tracing.REQUEST_SPAN] if span.context.trace_id == 0xD0]
    linked_to_low = [
        execution
        for execution in named[tracing.EXECUTION_SPAN]
        if any(link.context.span_id == low_request.context.span_id for link in execution.links)
    ]
    assert [execution.attributes["classify.rows"] for execution in linked_to_low] == [4, 4, 4]
