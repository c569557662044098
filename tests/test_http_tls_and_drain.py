"""HTTP with the gRPC side's certificate set (mutual TLS), and the SIGTERM drain of both protocols."""

from __future__ import annotations

import json
import signal
import socket
import ssl
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from conftest import copy_model
from test_security import make_ca, make_signed

MODEL = "imdb-lstm"


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("http-pki")
    ca = make_ca(folder, "http-test-ca")
    server = make_signed(folder, "server", ca, "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    client = make_signed(folder, "client", ca, "extendedKeyUsage=clientAuth\n")
    return {
        "ca": ca[0],
        "cert": server[0],
        "key": server[1],
        "client_cert": client[0],
        "client_key": client[1],
    }


@pytest.fixture(scope="module")
def text_repository(quick_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    repository = tmp_path_factory.mktemp("http-models")
    copy_model(quick_repository, MODEL, repository)
    return repository


def wait_http_ready(url: str, timeout: float = 180, **client) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=2, **client).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail(f"{url} not ready after {timeout} s")


def test_mutual_tls_uses_the_same_certificates(private_server, text_repository, certificates) -> None:
    started = private_server(
        text_repository,
        "--tls-cert-file", certificates["cert"], "--tls-key-file", certificates["key"],
        "--tls-client-ca-file", certificates["ca"],
    )  # fmt: skip

    for _ in range(600):
        if "HTTP on" in started.log():
            break
        time.sleep(0.1)
    url = started.http_url()
    assert url.startswith("https://")
    client_cert = (str(certificates["client_cert"]), str(certificates["client_key"]))
    context = ssl.create_default_context(cafile=str(certificates["ca"]))
    context.load_cert_chain(*client_cert)
    wait_http_ready(url, verify=context)
    reply = httpx.post(f"{url}/api/v1/models/{MODEL}:classify", json={"texts": ["Loved it."]}, verify=context)
    assert reply.status_code == 200 and reply.json()["model"] == MODEL
    without_cert = ssl.create_default_context(cafile=str(certificates["ca"]))
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{url}/v2/models/{MODEL}", verify=without_cert, timeout=5).raise_for_status()
    with pytest.raises(httpx.HTTPError):
        httpx.get(url.replace("https://", "http://") + "/v2", timeout=5).raise_for_status()


def test_sigterm_lets_a_request_in_progress_finish(private_server, text_repository) -> None:
    started = private_server(text_repository, "--grace-seconds", "10")
    started.wait_serving()
    url = started.http_url()
    address = urlsplit(url)
    body = json.dumps({"texts": ["A quiet, moving film."]}).encode()
    head = (
        f"POST /api/v1/models/{MODEL}:classify HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection((address.hostname, address.port), timeout=15) as sock:
        sock.sendall(head + body[:5])  # the request is in progress, its body half sent
        time.sleep(0.3)
        started.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        with pytest.raises(httpx.HTTPError):  # no new requests once draining
            httpx.get(f"{url}/v2", timeout=2)
        sock.sendall(body[5:])
        answer = b""
        # Headers and body may arrive as separate segments; the draining server closes after answering.
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
    assert b'"model":"imdb-lstm"' in answer
    assert started.process.wait(timeout=30) == 0
