"""Tracing on a real server process: spans exported over OTLP/HTTP to a loopback receiver this test runs
(decoded with opentelemetry-proto), in the caller's trace; a bad --otlp-endpoint refused at start-up;
and tracing off loads nothing of OpenTelemetry."""

from __future__ import annotations

import gzip
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from conftest import copy_model, run_cli
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from classify_client import Client

MODEL = "mnist-softmax"
DIGIT = np.random.default_rng(5).integers(0, 256, size=(1, 28, 28), dtype=np.uint8)
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"


class Receiver(BaseHTTPRequestHandler):
    """An OTLP/HTTP trace receiver: each POST to /v1/traces is decoded and kept, answered 200."""

    requests: ClassVar[list[ExportTraceServiceRequest]] = []
    paths: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        if self.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        self.paths.append(self.path)
        self.requests.append(ExportTraceServiceRequest.FromString(body))
        reply = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args) -> None:  # keep the test output clean
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, type[Receiver]]]:
    Receiver.requests, Receiver.paths = [], []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", Receiver
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def repository(quick_repository: Path, tmp_path: Path) -> Path:
    root = tmp_path / "models"
    root.mkdir()
    copy_model(quick_repository, MODEL, root)
    return root


def received_spans(sink: type[Receiver]) -> list[tuple[str, str, dict]]:
    """(span name, trace id in hex, resource attributes) of every span received so far."""
    found = []
    for request in list(sink.requests):
        for resource_spans in request.resource_spans:
            resource = {kv.key: kv.value.string_value for kv in resource_spans.resource.attributes}
            for scope in resource_spans.scope_spans:
                found.extend((span.name, span.trace_id.hex(), resource) for span in scope.spans)
    return found


def test_spans_reach_an_otlp_receiver_in_the_callers_trace(receiver, repository, private_server) -> None:
    endpoint, sink = receiver
    server = private_server(
        repository, f"--otlp-endpoint={endpoint}", "--otlp-service-name=classify-trace-test"
    )
    server.wait_serving()
    with Client(server.target, timeout=30) as client:
        result = client.classify(
            MODEL, images=DIGIT, headers={"traceparent": f"00-{TRACE_ID}-{CALLER_SPAN}-01"}
        )
    assert result.version == 1
    # The batch processor exports within its 5 s delay; SIGTERM flushes at once. Either way, they arrive.
    assert server.terminate() == 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(received_spans(sink)) < 3:
        time.sleep(0.1)
    spans = received_spans(sink)
    assert sorted(name for name, _, _ in spans) == [
        "classify.execution",
        "classify.queue",
        "classify.request",
    ]
    assert {trace for _, trace, _ in spans} == {TRACE_ID}
    assert {resource["service.name"] for _, _, resource in spans} == {"classify-trace-test"}
    assert set(sink.paths) == {"/v1/traces"}  # the endpoint was given without a path


@pytest.mark.parametrize(
    ("endpoint", "says"),
    [
        ("collector:4318", "is not an http(s) URL with a host"),
        ("ftp://collector:4318", "is not an http(s) URL with a host"),
        ("http://collector:notaport", "is not a URL"),
        ("http://:4318", "is not an http(s) URL with a host"),
    ],
)
def test_a_bad_otlp_endpoint_is_a_clear_startup_error(endpoint: str, says: str, tmp_path: Path) -> None:
    result = run_cli(
        "classify-server", "--model-repository", tmp_path, "--otlp-endpoint", endpoint, check=False
    )
    assert result.returncode == 2
    assert "--otlp-endpoint (or CLASSIFY_OTLP_ENDPOINT)" in result.stderr and says in result.stderr
    assert "Traceback" not in result.stderr


def test_tracing_off_loads_no_opentelemetry_sdk() -> None:
    """Every module with a tracing hook, imported as the server imports them: the SDK and the exporter
    stay out until --otlp-endpoint turns tracing on (the hooks only read tracing.state.enabled). FastAPI
    imports opentelemetry-api itself, so the API's modules are there either way."""
    check = (
        "import sys\n"
        "import classify_server.app, classify_server.tracing\n"
        "from classify_server import tracing\n"
        "assert not tracing.state.enabled\n"
        "sdk = ('opentelemetry.sdk', 'opentelemetry.exporter')\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(sdk))\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", check], check=True, timeout=120)
