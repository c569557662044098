"""Replicas that rebalance: real servers behind one DNS name, one long-lived client under load.

gRPC Python cannot take a resolver written in Python, and the machine's resolver cannot be given names
from a test (no /etc/hosts edits). But gRPC's c-ares resolver honours a DNS server named in the target,
``dns://127.0.0.1:<port>/replicas.test:<grpc port>``, so the test runs a real DNS server on loopback
(dnslib) whose A records it changes, and servers on 127.0.0.2, .3, ... sharing one port, as pods behind
a headless Service do. The channel resolves the name again when a connection closes, which the servers'
--max-connection-age-seconds makes happen every few seconds. Calls are counted per replica by each
server's own Prometheus metrics.
"""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import ServerProcess, copy_model
from dnslib import QTYPE, RR, A
from dnslib.server import BaseResolver, DNSLogger, DNSServer
from prometheus_client.parser import text_string_to_metric_families

from classify_client import ClassifyError, Client
from classify_client.settings import KEEPALIVE, channel_options
from classify_server.launcher import free_port

MODEL = "mnist-softmax"  # the quickest to load: four servers start on two cores
NAME = "replicas.test"
CONNECTION_AGE = 2.0
ADDRESSES = ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5")


class Records(BaseResolver):
    """The A records of NAME, changed by the test as replicas come and go (TTL 0)."""

    def __init__(self) -> None:
        self.addresses: list[str] = []

    def resolve(self, request, handler):  # dnslib's interface
        reply = request.reply()
        question = request.q
        if QTYPE[question.qtype] == "A" and str(question.qname).rstrip(".") == NAME:
            for address in self.addresses:
                reply.add_answer(RR(question.qname, QTYPE.A, rdata=A(address), ttl=0))
        return reply  # AAAA and anything else: no records


@pytest.fixture
def dns() -> Iterator[tuple[Records, int]]:
    records = Records()
    server = DNSServer(records, port=0, address="127.0.0.1", logger=DNSLogger("-request,-reply,-truncated"))
    server.start_thread()
    try:
        yield records, server.server.server_address[1]
    finally:
        server.stop()


@pytest.fixture(scope="module")
def small_repository(quick_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    repository = tmp_path_factory.mktemp("one-model")
    copy_model(quick_repository, MODEL, repository)
    return repository


def served_calls(server: ServerProcess) -> float:
    """Classify calls this replica answered, from its /metrics."""
    with urllib.request.urlopen(server.metrics_url(), timeout=10) as reply:
        text = reply.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "classify_requests"
        for sample in family.samples
        if sample.name == "classify_requests_total" and sample.labels.get("model") == MODEL
    )


class Load:
    """Calls from threads sharing one client, until stopped; failures are kept, not raised."""

    def __init__(self, client: Client, threads: int = 3) -> None:
        self.client = client
        self.calls = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._image = np.zeros((1, 28, 28), dtype=np.uint8)
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.client.classify(MODEL, images=self._image, timeout=30)
                self.calls += 1
            except ClassifyError as exc:
                self.failures.append(f"{exc.code.name}: {exc}")

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)


def shares(servers: list[ServerProcess], before: list[float]) -> list[float]:
    now = [served_calls(server) for server in servers]
    delta = [a - b for a, b in zip(now, before, strict=True)]
    total = sum(delta) or 1
    return [d / total for d in delta]


def replica(repository: Path, address: str, port: int, log_dir: Path) -> ServerProcess:
    return ServerProcess(
        repository,
        "--max-connection-age-seconds", str(CONNECTION_AGE),
        "--max-connection-age-grace-seconds", "1",
        "--grace-seconds", "5",
        host=address, port=port, http_port=-1, log_dir=log_dir,
    )  # fmt: skip


def test_dns_targets_get_round_robin_and_keepalive_by_default() -> None:
    dns_options = dict(channel_options(target="dns:///classify-server:8500"))
    assert dns_options["grpc.lb_policy_name"] == "round_robin"
    assert KEEPALIVE.items() <= dns_options.items()
    assert "grpc.lb_policy_name" not in dict(channel_options(target="127.0.0.1:8500"))
    explicit = dict(channel_options(target="dns:///x:1", load_balancing="pick_first"))
    assert explicit["grpc.lb_policy_name"] == "pick_first"


def test_replicas_share_calls_a_new_one_gets_its_share_and_a_stopped_one_fails_none(
    small_repository: Path, dns: tuple[Records, int], tmp_path: Path
) -> None:
    records, dns_port = dns
    port = free_port()
    servers = [replica(small_repository, address, port, tmp_path) for address in ADDRESSES]
    try:
        for server in servers:  # all four load at once; the fourth joins the name later
            server.start()
        for server in servers:
            server.wait_serving()
        print(f"four replicas SERVING in {max(server.ready_seconds or 0 for server in servers):.1f} s")
        records.addresses = list(ADDRESSES[:3])
        # A resolution at most every 0.5 s instead of gRPC's 30 s: the test's connection age is 2 s.
        target = f"dns://127.0.0.1:{dns_port}/{NAME}:{port}"
        fast_resolution = [("grpc.dns_min_time_between_resolutions_ms", 500)]
        with Client(target, options=fast_resolution) as client, Load(client) as load:
            start = [served_calls(server) for server in servers]
            time.sleep(2)
            three = shares(servers, start)
            assert all(share > 0.1 for share in three[:3]), three  # round_robin: every replica
            assert three[3] == 0

            records.addresses = list(ADDRESSES)  # the fourth replica joins the name
            joined_at = time.monotonic()
            time.sleep(CONNECTION_AGE)  # each connection aged (and re-resolved) once since
            second_period = [served_calls(server) for server in servers]
            time.sleep(CONNECTION_AGE)
            four = shares(servers, second_period)
            measured_at = time.monotonic() - joined_at
            print(f"joining replica's share from {CONNECTION_AGE:g} s to {measured_at:.1f} s after it joined: "
                  f"{four[3]:.0%} (all four: {[f'{s:.0%}' for s in four]})")  # fmt: skip
            assert four[3] >= 0.15, four

            records.addresses = list(ADDRESSES[1:])  # the first leaves the name and is stopped under load
            stopping = time.monotonic()
            assert servers[0].terminate() == 0
            print(f"the stopped replica drained and exited in {time.monotonic() - stopping:.1f} s")
            time.sleep(1)
            calls_after_stop = load.calls
            time.sleep(1)
            assert load.calls > calls_after_stop  # still serving on the other three
        assert load.failures == [], load.failures[:5]
        print(f"{load.calls} calls, none failed")
    finally:
        for server in servers:
            server.kill()
