"""What tracing and payload logging cost on batch-1 throughput, in one run on one machine.

    .venv/bin/python server/benchmarks/ops_cost.py --model-repository /tmp/models [--seconds 10]

Starts a `classify-server` on loopback (serving_limits.py's helpers; only the one model copied into its
repository) once per configuration and loads it with `classify bench` (batch 1, concurrency 16 by
default) for each of: nothing on; tracing on (--otlp-endpoint to an OTLP/HTTP receiver this process runs
on loopback, which counts the spans it gets); the payload log to a file at sample 1.0 and 0.01. It prints
requests/s, p50 and p99 per configuration and each one's throughput as a ratio of 'nothing'. It measures,
it does not assert: run it on a quiet machine, and read the ratios rather than the absolute figures.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from serving_limits import bench, serving


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
    return 0


if __name__ == "__main__":
    sys.exit(main())
