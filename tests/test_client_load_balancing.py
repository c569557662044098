"""Client-side load balancing, as used against a headless Kubernetes Service (deploy/k8s/service.yaml).

Two real gRPC servers that answer grpc.health.v1 differently stand in for two pods, so each answer says
which one served the call. A multi-address target plays the part of a DNS name with two A records (the
machine's resolver cannot be given one from a test); the policy under test is the same.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from classify_client import Client

STATUSES = (health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING)


@pytest.fixture(scope="module")
def two_replicas() -> Iterator[list[int]]:
    servers, ports = [], []
    for status in STATUSES:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        servicer = health.HealthServicer()
        servicer.set("", status)
        health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
        ports.append(server.add_insecure_port("127.0.0.1:0"))
        server.start()
        servers.append(server)
    yield ports
    for server in servers:
        server.stop(None)


def answers(client: Client, calls: int) -> set[str]:
    return {client.health(timeout=5) for _ in range(calls)}


def test_round_robin_spreads_calls_over_every_address(two_replicas: list[int]) -> None:
    target = "ipv4:" + ",".join(f"127.0.0.1:{port}" for port in two_replicas)
    with Client(target, load_balancing="round_robin") as client:
        client.health(timeout=5)  # connects every address before counting
        assert answers(client, 50) == {"SERVING", "NOT_SERVING"}


def test_without_a_policy_one_connection_takes_every_call(two_replicas: list[int]) -> None:
    # gRPC's default (pick_first): why a headless service needs the policy set.
    target = "ipv4:" + ",".join(f"127.0.0.1:{port}" for port in two_replicas)
    with Client(target) as client:
        assert len(answers(client, 20)) == 1


def test_a_dns_target_with_round_robin_connects(two_replicas: list[int]) -> None:
    with Client(f"dns:///localhost:{two_replicas[0]}", load_balancing="round_robin") as client:
        assert client.health(timeout=5) == "SERVING"
