"""Per-client defaults and their per-call overrides, shared by the sync and the asyncio client."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from .retry import RetryPolicy

DEFAULT_TARGET = "127.0.0.1:8500"
DEFAULT_TIMEOUT = 30.0
# gRPC's own default is 4 MB, about 5k MNIST images per call: far too small for batch scoring.
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
DEFAULT_CHUNK_ROWS = 256
# Chunk calls kept in flight by one classify() call: enough to overlap the network with the server's
# batcher, few enough not to fill its bounded queue on our own.
DEFAULT_IN_FLIGHT = 4
# Idempotent calls retry UNAVAILABLE (server restarting, still loading, unreachable) within their timeout.
DEFAULT_RETRY = RetryPolicy()
# gRPC waits up to 120 s between reconnection attempts to a server that went away; a restarted server
# would then sit unused for minutes. Two seconds keeps the wait after a restart short at little cost.
MAX_RECONNECT_BACKOFF_MS = 2000

# Keep-alive for dns: targets: a ping every 30 s, even between calls, and 10 s for its answer. Classify
# servers accept pings this often (gRPC's default would refuse more than one per 5 minutes).
KEEPALIVE = {
    "grpc.keepalive_time_ms": 30_000,
    "grpc.keepalive_timeout_ms": 10_000,
    "grpc.keepalive_permit_without_calls": 1,
}

ChannelOptions = Sequence[tuple[str, Any]]


class Unset(enum.Enum):
    """Marks an argument that was not passed, where None has a meaning of its own (no timeout)."""

    TOKEN = enum.auto()


UNSET = Unset.TOKEN
Timeout = float | None | Unset


@dataclass(frozen=True)
class CallDefaults:
    """What every call uses unless it passes its own ``timeout=`` or ``headers=``."""

    timeout: float | None = DEFAULT_TIMEOUT
    headers: Mapping[str, str] = field(default_factory=dict)

    def timeout_for(self, timeout: Timeout) -> float | None:
        return self.timeout if isinstance(timeout, Unset) else timeout

    def metadata_for(self, headers: Mapping[str, str] | None) -> tuple[tuple[str, str], ...] | None:
        """gRPC metadata for a call: the call's headers merged over the defaults, keys lowercased.

        gRPC rejects upper-case metadata keys, so lowercasing here saves callers a confusing error.
        """
        merged = {key.lower(): value for key, value in self.headers.items()}
        merged.update({key.lower(): value for key, value in (headers or {}).items()})
        return tuple(merged.items()) or None


def is_dns_target(target: str) -> bool:
    """``dns:///name:port`` (or ``dns://resolver/name:port``): a name that may resolve to many replicas."""
    return target.startswith("dns:")


def channel_options(
    *,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    load_balancing: str | None = None,
    options: ChannelOptions = (),
    target: str = "",
) -> list[tuple[str, Any]]:
    """Channel arguments: large messages both ways, a load-balancing policy, keep-alive, then extras.

    A ``dns:`` target gets ``round_robin`` (calls spread over every address the name resolves to, such as
    the pods behind a headless Service; gRPC's default picks the first address only) and keep-alive pings
    (a replica that vanished without closing its connections is noticed in seconds, not minutes).
    ``load_balancing`` overrides the policy for any target ("pick_first" turns balancing off).
    The server closes connections past its --max-connection-age-seconds; the channel then reconnects,
    re-resolving the name, so replicas that joined since get their share.
    """
    merged: dict[str, Any] = {
        "grpc.max_send_message_length": max_message_bytes,
        "grpc.max_receive_message_length": max_message_bytes,
        "grpc.initial_reconnect_backoff_ms": 100,
        "grpc.max_reconnect_backoff_ms": MAX_RECONNECT_BACKOFF_MS,
    }
    if is_dns_target(target):
        merged["grpc.lb_policy_name"] = "round_robin"
        merged.update(KEEPALIVE)
    if load_balancing:
        merged["grpc.lb_policy_name"] = load_balancing
    merged.update(dict(options))
    return list(merged.items())


def with_token(headers: Mapping[str, str] | None, token: str | None) -> dict[str, str]:
    """Default call headers, plus ``authorization: Bearer <token>`` when a token is given."""
    merged = {key.lower(): value for key, value in (headers or {}).items()}
    if token:
        merged["authorization"] = f"Bearer {token}"
    return merged


def tls_credentials(
    ca_file: str | Path | None = None, cert_file: str | Path | None = None, key_file: str | Path | None = None
) -> grpc.ChannelCredentials:
    """TLS credentials from PEM files: the CA to trust (default: the system's), and for mutual TLS the
    client's certificate and key."""
    if (cert_file is None) != (key_file is None):
        raise ValueError("a client certificate and its key go together (cert_file and key_file)")

    def read(path: str | Path | None) -> bytes | None:
        return None if path is None else Path(path).read_bytes()

    return grpc.ssl_channel_credentials(
        root_certificates=read(ca_file), private_key=read(key_file), certificate_chain=read(cert_file)
    )
