"""What gRPC guarantees holds over HTTP too: tokens, limits (413), the concurrency limit (429), request
ids, metrics per protocol, JSON failure logs; and hostile input gets a clear 4xx, never a 500 or a hang."""

from __future__ import annotations

import contextlib
import json
import socket
import time
import urllib.request
from urllib.parse import urlsplit

import httpx
import pytest

IMAGE_MODEL, TEXT_MODEL = "mnist-cnn", "imdb-lstm"
TOKEN = "s3cret-token"
INFER = f"/v2/models/{IMAGE_MODEL}/infer"


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.http_url(), timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def guarded(quick_repository, tmp_path_factory):
    """A server with tokens, small limits, 1 s header and body timeouts, one request at a time and JSON
    logs."""
    from conftest import launch_server

    started = launch_server(
        quick_repository,
        tmp_path_factory.mktemp("guarded"),
        "--auth-tokens", f'["{TOKEN}"]',
        "--max-request-rows", "2",
        "--max-message-bytes", str(64 * 1024),
        "--http-body-timeout-seconds", "1",
        "--http-header-timeout-seconds", "1",
        "--max-concurrent-requests", "1",
        "--log-format", "json",
    )  # fmt: skip
    try:
        started.wait_serving()
        yield started
    finally:
        started.terminate()


def raw_exchange(url: str, request: bytes, *, pause_after: float = 0.0, timeout: float = 10.0) -> bytes:
    """Send raw bytes (a lying header, a body that stops) and read until the server closes or times out."""
    address = urlsplit(url)
    with socket.create_connection((address.hostname, address.port), timeout=timeout) as sock:
        sock.sendall(request)
        time.sleep(pause_after)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except TimeoutError:
            pass
        return received


@pytest.mark.parametrize(
    ("path", "body", "expected"),
    [
        (INFER, b'{"inputs": [', "not valid JSON"),
        (INFER, b'{"inputs": "images"}', "field 'inputs'"),
        (INFER, b'{"inputs": [{"name": "images", "shape": "28", "datatype": "UINT8", "data": []}]}', "shape"),
        (INFER, b"", "the request body is empty"),
        (f"/v1/models/{TEXT_MODEL}:predict", b'{"instances": 7}', "must be a list"),
        (f"/v1/models/{TEXT_MODEL}:predict", b'{"instances": [1, 2]}', "expected a string"),
        (f"/api/v1/models/{TEXT_MODEL}:classify", b'{"texts": "one"}', "field 'texts'"),
        (f"/api/v1/models/{TEXT_MODEL}:classify", b'{"texts": ["x"], "top_k": "many"}', "top_k"),
        (INFER, b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "not valid JSON"),
        (
            f"/v1/models/{IMAGE_MODEL}:predict",
            b'{"instances": ' + b"[" * 150 + b"]" * 150 + b"}",
            "not a rectangular nested list",
        ),
    ],
    ids=[
        "truncated",
        "wrong-type",
        "wrong-shape-type",
        "empty",
        "tfs-scalar",
        "tfs-numbers-for-texts",
        "native-string",
        "native-top-k",
        "deep-nesting",
        "tfs-deep-nesting",
    ],
)
def test_bad_json_is_a_clear_400(http, path, body, expected) -> None:
    reply = http.post(path, content=body, headers={"content-type": "application/json"})
    assert reply.status_code == 400, reply.text
    assert expected in reply.json()["error"]
    assert reply.json()["code"] == "INVALID_ARGUMENT"


def test_a_lying_content_length_is_refused_at_once_and_closed(server) -> None:
    started = time.monotonic()
    request = (
        f"POST {INFER} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        "Content-Length: 2000000000\r\n\r\n{"
    ).encode()
    answer = raw_exchange(server.http_url(), request)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"--max-message-bytes" in answer
    assert time.monotonic() - started < 5  # answered and closed, not kept waiting for 2 GB


def test_request_ids_come_back_and_are_made_up_when_missing(http) -> None:
    mine = http.get(f"/v2/models/{IMAGE_MODEL}", headers={"x-request-id": "trace-16"})
    assert mine.headers["x-request-id"] == "trace-16"
    failed = http.post(INFER, content=b"{", headers={"x-request-id": "trace-17"})
    assert failed.headers["x-request-id"] == "trace-17"
    assert http.get("/v2").headers["x-request-id"]


def test_metrics_count_each_http_protocol(
    http,
    server,
) -> None:
    image = [[[0] * 28] * 28]
    assert (
        http.post(
            INFER,
            json={"inputs": [{"name": "images", "shape": [1, 28, 28], "datatype": "UINT8", "data": image}]},
        ).status_code
        == 200
    )
    assert http.post(f"/v1/models/{IMAGE_MODEL}:predict", json={"instances": image}).status_code == 200
    assert http.post(f"/api/v1/models/{IMAGE_MODEL}:classify", json={"images": image}).status_code == 200
    with urllib.request.urlopen(server.metrics_url(), timeout=10) as reply:
        metrics = reply.read().decode()
    for protocol in ("http-v2", "http-tfs", "http-native"):
        assert (
            f'classify_requests_total{{code="OK",method="Classify",model="{IMAGE_MODEL}",'
            f'protocol="{protocol}",version="1"}}' in metrics
        ), protocol


def test_bearer_tokens(guarded) -> None:
    url = guarded.http_url()
    with httpx.Client(base_url=url, timeout=30) as client:
        assert client.get("/v2/health/ready").status_code == 200  # probes stay open
        missing = client.get(f"/v2/models/{IMAGE_MODEL}")
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == 'Bearer realm="classify"'
        assert "authorization: Bearer <token>" in missing.json()["error"]
        wrong = client.get(f"/v1/models/{IMAGE_MODEL}", headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 401 and 'error="invalid_token"' in wrong.headers["www-authenticate"]
        right = client.get(f"/v1/models/{IMAGE_MODEL}", headers={"authorization": f"Bearer {TOKEN}"})
        assert right.status_code == 200


def test_row_and_size_limits_are_413(guarded) -> None:
    headers = {"authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=guarded.http_url(), timeout=30, headers=headers) as client:
        rows = client.post(f"/api/v1/models/{TEXT_MODEL}:classify", json={"texts": ["a", "b", "c"]})
        assert rows.status_code == 413 and "limit of 2 per request" in rows.json()["error"]
        big = client.post(f"/api/v1/models/{TEXT_MODEL}:classify", json={"texts": ["x" * 70_000]})
        assert big.status_code == 413 and "65536" in big.json()["error"]


def test_a_slow_body_times_out_and_holds_the_only_slot_until_then(guarded) -> None:
    url = guarded.http_url()
    address = urlsplit(url)
    request = (
        f"POST /api/v1/models/{TEXT_MODEL}:classify HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {TOKEN}\r\n"
        'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"texts"'
    ).encode()
    with socket.create_connection((address.hostname, address.port), timeout=10) as slow:
        slow.sendall(request)
        time.sleep(0.3)
        # --max-concurrent-requests 1: the slow request holds the one slot, so this one is refused.
        busy = httpx.get(
            f"{url}/v2/models/{IMAGE_MODEL}", headers={"authorization": f"Bearer {TOKEN}"}, timeout=10
        )
        assert busy.status_code == 429 and busy.headers["retry-after"] == "1"
        assert "--max-concurrent-requests" in busy.json()["error"]
        answer = b""
        while chunk := slow.recv(65536):  # the 408 closes the connection: read up to that
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"--http-body-timeout-seconds" in answer
    log_lines = [json.loads(line) for line in guarded.log().splitlines() if line.startswith("{")]
    failures = [line for line in log_lines if line.get("event") == "request_failed"]
    assert any(
        line["code"] == "DEADLINE_EXCEEDED" and line["method"].startswith("POST /api/v1/")
        for line in failures
    )
    assert any(line["code"] == "RESOURCE_EXHAUSTED" for line in failures)


def read_until_closed(sock: socket.socket, *, trickle: bytes = b"", every: float = 0.2) -> bytes:
    """Everything the server sends until it closes, sending ``trickle`` every ``every`` s meanwhile
    (a slow-loris client: one more header line now and then, never the blank line that ends them)."""
    sock.settimeout(every)
    received = b""
    give_up = time.monotonic() + 15  # a server that never closes fails the assertions, not the run
    while time.monotonic() < give_up:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            if trickle:
                with contextlib.suppress(OSError):  # closed under us: what is left to read says why
                    sock.sendall(trickle)
            continue
        except ConnectionResetError:
            break
        if not chunk:
            break
        received += chunk
    return received


@pytest.mark.parametrize(
    "opening",
    [b"", b"GET /v2/health/live HTTP/1.1\r\nHost: test\r\n"],
    ids=["silent-connection", "headers-never-end"],
)
def test_slow_headers_are_answered_408_and_closed_without_taking_the_slot(guarded, opening) -> None:
    address = urlsplit(guarded.http_url())
    started = time.monotonic()
    with socket.create_connection((address.hostname, address.port), timeout=10) as slow:
        slow.sendall(opening)
        time.sleep(0.3)
        # --max-concurrent-requests 1: a connection still sending its headers holds no request slot.
        other = httpx.get(
            f"{guarded.http_url()}/v2/models/{IMAGE_MODEL}", headers={"authorization": f"Bearer {TOKEN}"}
        )
        assert other.status_code == 200
        answer = read_until_closed(slow, trickle=b"X-Slow: 1\r\n" if opening else b"")
    closed_after = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"--http-header-timeout-seconds" in answer and b"DEADLINE_EXCEEDED" in answer
    assert closed_after < 5  # the 1 s header deadline, not the client's patience, ended it
    assert "request headers did not arrive within 1 s" in guarded.log()


def test_a_kept_alive_connection_gets_the_same_header_deadline_for_its_next_request(guarded) -> None:
    address = urlsplit(guarded.http_url())
    with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: test\r\n\r\n")
        time.sleep(0.3)
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: te")  # and nothing more
        answer = read_until_closed(sock)
    first, _, rest = answer.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 200"), answer[:200]
    assert b"HTTP/1.1 408" in rest


def test_a_head_that_grows_past_h11s_limit_is_a_400(guarded) -> None:
    address = urlsplit(guarded.http_url())
    with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: test\r\nX-Big: ")
        with contextlib.suppress(OSError):  # refused (and closed) before the megabyte is all sent
            for _ in range(64):
                sock.sendall(b"a" * 16_384)
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert b"Invalid HTTP request" in answer
