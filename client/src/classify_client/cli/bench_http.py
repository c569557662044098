"""``classify bench`` over HTTP: KServe V2 REST ``infer`` with binary-extension or JSON tensor bodies.

The same rules as the gRPC load generator (load_generator.py): every request is built once up front,
and an answer is checked by its status only, never parsed. The requests go out on keep-alive HTTP/1.1
connections, one per request in flight (bench_wire.py); httpx only asks for the model's metadata.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import grpc
import httpx
import numpy as np

from ..conversions import Inputs, serialize_texts
from .bench_wire import ConnectionPool, Origin, WireError, post_request
from .load_generator import LoadLoop, LoadSpec, StepResult, run_steps, serialized_requests

DEFAULT_HTTP_PORT = 8501
HEADER_LENGTH = "Inference-Header-Content-Length"


class BenchSetupError(Exception):
    """The HTTP side cannot be measured (unreachable port, unknown model): one line for the user."""


@dataclass(frozen=True)
class HttpEndpoint:
    """Where the server's HTTP port is and how to trust it."""

    base_url: str
    verify: ssl.SSLContext | bool = True


@dataclass(frozen=True)
class HttpPayload:
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TensorNames:
    input: str
    output: str


def http_endpoint(
    target: str, http_target: str | None, tls_files: tuple[object, object, object] | None
) -> HttpEndpoint:
    """The HTTP base URL: ``http_target`` (HOST:PORT or a URL), else --target's host on port 8501.

    With TLS (``tls_files`` = CA, certificate, key; any may be None) it is https, trusting the same CA
    and presenting the same client certificate as the gRPC calls: the server has one certificate set.
    """
    scheme = "https" if tls_files is not None else "http"
    if http_target and "://" in http_target:
        base = http_target.rstrip("/")
    elif http_target:
        base = f"{scheme}://{http_target}"
    else:
        address = target.removeprefix("dns:///").removeprefix("dns:").removeprefix("ipv4:").split(",")[0]
        host = urlsplit(f"//{address}").hostname or "127.0.0.1"
        host = f"[{host}]" if ":" in host else host
        base = f"{scheme}://{host}:{DEFAULT_HTTP_PORT}"
    if tls_files is None:
        return HttpEndpoint(base)
    ca_file, cert_file, key_file = tls_files
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    if cert_file and key_file:
        context.load_cert_chain(str(cert_file), str(key_file))
    return HttpEndpoint(base, verify=context)


def infer_path(model: str, version: int | None) -> str:
    return f"/v2/models/{model}" + (f"/versions/{version}" if version else "")


async def tensor_names(
    client: httpx.AsyncClient, model: str, version: int | None, headers: dict[str, str]
) -> TensorNames:
    """The model's input and output names, from the protocol's own metadata route."""
    try:
        reply = await client.get(infer_path(model, version), headers=headers, timeout=10)
    except httpx.HTTPError as exc:
        raise BenchSetupError(
            f"cannot reach the HTTP port at {client.base_url}: {exc or type(exc).__name__} "
            "(--http-target HOST:PORT gives it)"
        ) from None
    if reply.status_code != 200:
        raise BenchSetupError(
            f"GET {client.base_url}{infer_path(model, version)} answered {reply.status_code}: "
            f"{reply.text[:200]}"
        )
    metadata = reply.json()
    return TensorNames(metadata["inputs"][0]["name"], metadata["outputs"][0]["name"])


def input_tensor(batch: Inputs, name: str) -> tuple[dict[str, object], bytes, list[object]]:
    """The V2 input tensor of a batch: its description, its raw bytes, and its JSON values."""
    if batch.images is not None:
        images = np.ascontiguousarray(batch.images, dtype=np.uint8)
        header = {"name": name, "shape": list(images.shape), "datatype": "UINT8"}
        return header, images.tobytes(), images.reshape(-1).tolist()
    texts = list(batch.texts or [])
    return {"name": name, "shape": [len(texts)], "datatype": "BYTES"}, serialize_texts(texts), texts


def binary_payload(batch: Inputs, names: TensorNames) -> HttpPayload:
    """JSON header, then the raw tensor; the probabilities come back binary as well (FP32 bytes)."""
    tensor, raw, _ = input_tensor(batch, names.input)
    header = json.dumps(
        {
            "inputs": [{**tensor, "parameters": {"binary_data_size": len(raw)}}],
            "outputs": [{"name": names.output, "parameters": {"binary_data": True}}],
        },
        separators=(",", ":"),
    ).encode()
    return HttpPayload(
        header + raw,
        {HEADER_LENGTH: str(len(header)), "content-type": "application/octet-stream"},
    )


def json_payload(batch: Inputs, names: TensorNames) -> HttpPayload:
    """Every value as JSON, in and out: what a client without the binary extension sends."""
    tensor, _, values = input_tensor(batch, names.input)
    body = json.dumps(
        {"inputs": [{**tensor, "data": values}], "outputs": [{"name": names.output}]},
        separators=(",", ":"),
    ).encode()
    return HttpPayload(body, {"content-type": "application/json"})


class HttpLoadGenerator(LoadLoop):
    """Posts pre-built KServe V2 REST requests (whole ``POST``s as bytes) to one origin and times them."""

    def __init__(
        self,
        http: HttpEndpoint,
        *,
        target: str,
        requests: Sequence[bytes],
        headers: dict[str, str] | None,
        credentials: grpc.ChannelCredentials | None,
    ) -> None:
        super().__init__(target, requests, headers, credentials)
        # Its own pool of keep-alive connections to the endpoint's origin, closed with the generator.
        self._pool = ConnectionPool(Origin.of(http.base_url, http.verify))

    async def close(self) -> None:
        await self._pool.close()
        await super().close()

    async def _send(self, payload: bytes, timeout: float) -> str | None:
        try:
            status = await self._pool.send(payload, timeout)
        except TimeoutError:
            return "DEADLINE_EXCEEDED"
        except (OSError, WireError) as exc:
            return type(exc).__name__
        return None if status == 200 else f"HTTP_{status}"


async def http_requests(
    http: HttpEndpoint,
    *,
    model: str,
    version: int | None,
    pool: Inputs,
    batch_size: int,
    protocol: str,
    headers: dict[str, str] | None,
) -> list[bytes]:
    """The whole ``POST``s for ``http-binary`` or ``http-json``, built once: bytes, so that the worker
    processes of ``--processes`` can be handed them as they are (bench_procs.py)."""
    async with httpx.AsyncClient(base_url=http.base_url, headers=headers or {}, verify=http.verify) as client:
        names = await tensor_names(client, model, version, {})
    encode = binary_payload if protocol == "http-binary" else json_payload
    origin = Origin.of(http.base_url, http.verify)
    path = urlsplit(http.base_url).path.rstrip("/") + infer_path(model, version) + "/infer"

    def request(batch: Inputs) -> bytes:
        payload = encode(batch, names)
        return post_request(origin, path, payload.body, {**(headers or {}), **payload.headers})

    return serialized_requests(pool, batch_size, request)


async def http_generator(
    http: HttpEndpoint,
    *,
    target: str,
    model: str,
    version: int | None,
    pool: Inputs,
    batch_size: int,
    protocol: str,
    headers: dict[str, str] | None,
    credentials: grpc.ChannelCredentials | None,
) -> HttpLoadGenerator:
    """A generator for ``http-binary`` or ``http-json``: as many keep-alive connections as requests in
    flight."""
    requests = await http_requests(
        http,
        model=model,
        version=version,
        pool=pool,
        batch_size=batch_size,
        protocol=protocol,
        headers=headers,
    )
    return HttpLoadGenerator(http, target=target, requests=requests, headers=headers, credentials=credentials)


async def http_benchmark(
    http: HttpEndpoint,
    *,
    target: str,
    model: str,
    version: int | None,
    pool: Inputs,
    batch_size: int,
    protocol: str,
    headers: dict[str, str] | None,
    credentials: grpc.ChannelCredentials | None,
    specs: Sequence[LoadSpec],
) -> list[StepResult]:
    """Run each step in turn over one pool of HTTP connections, as ``load_generator.benchmark`` over
    one gRPC channel."""
    generator = await http_generator(
        http,
        target=target,
        model=model,
        version=version,
        pool=pool,
        batch_size=batch_size,
        protocol=protocol,
        headers=headers,
        credentials=credentials,
    )
    return await run_steps(generator, specs, batch_size, model, protocol)
