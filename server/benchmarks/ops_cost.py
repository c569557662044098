"""What tracing and payload logging cost on batch-1 throughput, in one run on one machine.

    .venv/bin/python server/benchmarks/ops_cost.py --model-repository /tmp/models [--seconds 10]

Starts a `classify-server` on loopback (serving_limits.py's helpers; only the one model copied into its
repository) once per configuration and loads it with `classify bench` (batch 1, concurrency 16 by
default) for each of: nothing on; tracing on (--otlp-endpoint to an OTLP/HTTP receiver this process runs
on loopback, which counts the spans it gets); the payload log to a file at sample 1.0 and 0.01; and
nothing again, last, so the drift of a shared machine shows. It prints requests/s, p50 and p99 per
configuration and each one's throughput as a ratio of the first 'nothing'.

Served throughput on a busy machine moves by more than these features cost, so it also measures their
request-path work in this process, which load on other cores hardly changes: CPU microseconds per
request (all threads, time.process_time) of tracing's hooks as a batch-1 request runs them (traceparent
adopted, request and queue spans, an execution span with its link, and the OTLP protobuf encoding the
exporter does), and of the payload log (the sample draw, the record, and the writer thread's JSON line).
It measures, it does not assert: read the ratios and the microseconds, not the absolute rates.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from serving_limits import bench, serving

from classify_server import tracing
from classify_server.payload_log import PayloadLog
from classify_server.serving.data_plane import ClassifyCall
from classify_server.serving.validation import ImagePayload

HOOK_REQUESTS = 20_000


class SpanCounter(BaseHTTPRequestHandler):
    """A loopback OTLP/HTTP receiver: decodes each export and counts its spans, answers 200.

    Decoding is what a collector does first; it runs here, beside the server, on the same cores.
    """

    spans = 0
    exports = 0
    lock = threading.Lock()

    def do_POST(self) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        body = self.rfile.read(int(self.headers["content-length"]))
        request = ExportTraceServiceRequest.FromString(body)
        count = sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
        with SpanCounter.lock:
            SpanCounter.spans += count
            SpanCounter.exports += 1
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def otlp_receiver() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), SpanCounter)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


class EncodingExporter(SpanExporter):
    """A span exporter that does the OTLP exporter's CPU work (protobuf encoding) and sends nothing."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        encode_spans(spans).SerializePartialToString()
        return SpanExportResult.SUCCESS


class _Rows:
    """A batcher queue entry as the execution hook sees it."""

    def __init__(self, rows: np.ndarray) -> None:
        self.rows = rows


def tracing_us_per_request(requests: int) -> float:
    """CPU µs per batch-1 request of every tracing hook, spans exported through the batch processor."""
    call = ClassifyCall("mnist-cnn", None, None, 1)
    metadata = [("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")]
    rows = np.zeros((1, 28, 28), np.uint8)

    async def run_batch(batch: np.ndarray, deadline: float | None) -> np.ndarray:
        span = tracing.start_execution("mnist-cnn", [_Rows(batch)], False)
        assert span is not None
        tracing.end_execution(span)
        return batch

    async def one_request() -> None:
        tracing.adopt_metadata(metadata)
        traced = tracing.start_request("Classify", call)
        await tracing.traced_submit(run_batch, "mnist-cnn")(rows, None)
        tracing.end_request(*traced, None, "OK", None)

    async def requests_in_a_row() -> None:
        for _ in range(requests):
            await one_request()

    processor = BatchSpanProcessor(EncodingExporter())
    tracing.enable(processor)
    asyncio.run(requests_in_a_row())  # warm-up: imports, first spans
    started = time.process_time()
    asyncio.run(requests_in_a_row())
    processor.force_flush()
    seconds = time.process_time() - started
    tracing.disable()
    return seconds / requests * 1e6


def payload_log_us_per_request(requests: int, sample: float, path: Path) -> float:
    """CPU µs per request of the payload log: offer() on the request path plus the writer thread."""
    from types import SimpleNamespace

    call = ClassifyCall("mnist-cnn", None, ImagePayload(bytes(784), (1, 28, 28)), 1)
    spec = SimpleNamespace(name="mnist-cnn", version=1, labels=tuple(str(d) for d in range(10)))
    result = SimpleNamespace(top_indices=np.array([[7]]), top_scores=np.array([[0.98]], np.float32))
    payloads = PayloadLog(str(path), sample, requests + 1, "summary")
    payloads.start()
    started = time.process_time()
    for _ in range(requests):
        payloads.offer(call, spec, "OK", 0.001, result)  # type: ignore[arg-type]
    payloads.close(timeout=60)  # waits for the writer: its CPU counts
    return (time.process_time() - started) / requests * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-repository", type=Path, required=True, help="a repository with --model")
    parser.add_argument("--model", default="mnist-cnn", help="the model loaded (batch-1 requests)")
    parser.add_argument("--seconds", type=float, default=10.0, help="measurement time per configuration")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    parser.add_argument(
        "--server-arg", action="append", default=[], help="extra classify-server flag (repeat)"
    )
    args = parser.parse_args()
    if not (args.model_repository / args.model).is_dir():
        parser.error(f"{args.model_repository} has no {args.model}/ (classify-train ... --export it)")
    rows: list[tuple[str, dict, str]] = []
    with tempfile.TemporaryDirectory(prefix="classify-ops-cost-") as work:
        print(f"request-path CPU in this process ({HOOK_REQUESTS:,} requests each) ...", flush=True)
        hooks = {
            "tracing on (3 spans, 1 link, OTLP encoding)": tracing_us_per_request(HOOK_REQUESTS),
            "payload log, sample 1.0 (offer + JSON line)": payload_log_us_per_request(
                HOOK_REQUESTS, 1.0, Path(work) / "hooks-1.jsonl"
            ),
            "payload log, sample 0.01": payload_log_us_per_request(
                HOOK_REQUESTS, 0.01, Path(work) / "hooks-001.jsonl"
            ),
        }
        repository = Path(work) / "models"
        shutil.copytree(args.model_repository / args.model, repository / args.model)
        log_file = Path(work) / "payloads.jsonl"
        log_to = f"--payload-log={log_file}"
        with otlp_receiver() as endpoint:
            configurations = [
                ("nothing", []),
                ("tracing (--otlp-endpoint, loopback receiver)", [f"--otlp-endpoint={endpoint}"]),
                ("payload log, file, sample 1.0", [log_to, "--payload-log-sample=1.0"]),
                ("payload log, file, sample 0.01", [log_to, "--payload-log-sample=0.01"]),
                ("nothing (again, last)", []),
            ]
            for name, flags in configurations:
                print(f"{name} ...", flush=True)
                log_file.unlink(missing_ok=True)
                spans_before = SpanCounter.spans
                with serving(repository, [*flags, *args.server_arg]) as server:
                    step = bench(server.target, args.model, 1, args.concurrency, args.seconds)
                # The server flushed its spans and log entries as it stopped.
                note = ""
                if "--otlp-endpoint" in " ".join(flags):
                    note = f"{SpanCounter.spans - spans_before:,} spans received"
                elif log_file.exists():
                    note = f"{sum(1 for _ in log_file.open()):,} log lines"
                rows.append((name, step, note))
    base = rows[0][1]["requests_per_second"]
    print(f"\n{args.model}, batch 1, concurrency {args.concurrency}, {args.seconds:g} s per configuration")
    print(f"{'configuration':<46} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'ratio':>6} {'errors':>6}  notes")
    for name, step, note in rows:
        ratio = step["requests_per_second"] / base if base else float("nan")
        print(
            f"{name:<46} {step['requests_per_second']:>8,.0f} {step['p50_ms']:>7.2f} {step['p99_ms']:>7.2f} "
            f"{ratio:>6.2f} {step['errors']!s:>6}  {note}"
        )
    print("\nrequest-path CPU per request, measured in this process (tracing off costs one flag read)")
    for name, micros in hooks.items():
        print(f"{name:<46} {micros:>8.1f} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
