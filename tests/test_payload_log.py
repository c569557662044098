"""The payload log on a real server: every sampled call becomes one entry with its request id, to a file
or as CloudEvents to a loopback HTTP sink, and a sink that never answers drops (and counts) entries while
every request still succeeds."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from conftest import copy_model
from test_metrics import scrape, value

from classify_client import Client

MODEL = "mnist-softmax"
DIGIT = np.random.default_rng(2).integers(0, 256, size=(1, 28, 28), dtype=np.uint8)


@pytest.fixture
def repository(quick_repository: Path, tmp_path: Path) -> Path:
    root = tmp_path / "models"
    root.mkdir()
    copy_model(quick_repository, MODEL, root)
    return root


def call(target: str, count: int, prefix: str) -> list[str]:
    """``count`` concurrent batch-1 calls, each with its own x-request-id; raises if any fails."""
    ids = [f"{prefix}-{i}" for i in range(count)]
    with Client(target, timeout=30) as client:
        futures = [client.classify_future(MODEL, images=DIGIT, headers={"x-request-id": i}) for i in ids]
        for future in futures:
            assert future.result().version == 1
    return ids


def wait_for_lines(path: Path, count: int, timeout: float = 60) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= count:
            return [json.loads(line) for line in lines]
        time.sleep(0.1)
    raise AssertionError(f"{path} has {len(lines)} lines, expected {count}")


def test_sample_one_logs_every_call_with_its_id(repository, tmp_path, private_server) -> None:
    log_file = tmp_path / "payloads.jsonl"
    server = private_server(
        repository, "--metrics-port=0", f"--payload-log={log_file}", "--payload-log-sample=1.0"
    )
    server.wait_serving()
    sent = call(server.target, 500, "logged")
    entries = wait_for_lines(log_file, 500)
    assert sorted(e["id"] for e in entries) == sorted(sent)
    first = entries[0]
    assert (first["model"], first["version"], first["code"], first["protocol"]) == (MODEL, 1, "OK", "native")
    assert first["inputs"] == {"kind": "image", "shape": [1, 28, 28], "bytes": 784}
    assert len(first["outputs"]) == 1 and first["outputs"][0][0]["label"] in "0123456789"
    assert first["latency_ms"] > 0
    assert value(scrape(server), "classify_payload_log_entries_total", outcome="written") == 500


class Recorder(BaseHTTPRequestHandler):
    events: ClassVar[list[tuple[str, dict]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        Recorder.events.append((self.headers["content-type"], json.loads(body)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_sink() -> Iterator[str]:
    sink = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    Recorder.events = []
    yield f"http://127.0.0.1:{sink.server_port}/events"
    sink.shutdown()


def test_a_url_gets_cloudevents(repository, http_sink, private_server) -> None:
    server = private_server(
        repository, "--payload-log", http_sink, "--payload-log-sample=1", "--payload-log-inputs=full"
    )
    server.wait_serving()
    sent = call(server.target, 20, "event")
    deadline = time.monotonic() + 30
    while len(Recorder.events) < 20 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sorted(event["id"] for _, event in Recorder.events) == sorted(sent)
    content_type, event = Recorder.events[0]
    assert content_type == "application/cloudevents+json"
    assert (event["specversion"], event["type"], event["data"]["model"]) == (
        "1.0",
        "io.classify.payload.v1",
        MODEL,
    )
    assert len(event["data"]["inputs"]["uint8_base64"]) == 1048  # 784 bytes in full, base64


def test_a_stuck_sink_drops_and_counts_and_requests_are_unaffected(repository, private_server) -> None:
    stuck = socket.socket()
    stuck.bind(("127.0.0.1", 0))
    stuck.listen(64)  # never accepted, never answered: every POST waits for its timeout
    try:
        server = private_server(
            repository,
            "--metrics-port=0",
            f"--payload-log=http://127.0.0.1:{stuck.getsockname()[1]}/",
            "--payload-log-sample=1.0",
            "--payload-log-buffer=5",
        )
        server.wait_serving()
        call(server.target, 300, "stuck")  # every call succeeds
        samples = scrape(server)
        dropped = value(samples, "classify_payload_log_entries_total", outcome="dropped")
        assert dropped >= 300 - 5 - 6  # all but the buffer and the batch the writer took before it stuck
        assert value(samples, "classify_payload_log_entries_total", outcome="written") == 0
    finally:
        stuck.close()
