"""Request ids: taken from the caller's ``x-request-id`` metadata or made up, readable anywhere in a call.

The id (and the RPC's method) live in a context variable: grpc.aio runs each call in a task of its own
and tasks copy the context, so stream messages answered in sub-tasks see their stream's id too.
"""

from __future__ import annotations

import itertools
import os
from contextvars import ContextVar

import grpc

REQUEST_ID_HEADER = "x-request-id"
# A caller's own key for canary routing (a user or session id): requests with one key stay on one version.
ROUTE_KEY_HEADER = "x-classify-route-key"
# A caller's scheduling priority (high, normal, low) where its request message has no field for it.
PRIORITY_HEADER = "x-classify-priority"
MAX_REQUEST_ID_CHARS = 128  # a caller's id ends up in every log line about its call: keep it bounded
_CALL_HEADERS = frozenset((REQUEST_ID_HEADER, ROUTE_KEY_HEADER, PRIORITY_HEADER))

# (request id, method) of the call being served; empty outside calls (start-up, polling, health).
current_call: ContextVar[tuple[str, str]] = ContextVar("current_call", default=("", ""))
# The caller's x-classify-route-key, or "" (then the request id routes the call).
current_route_key: ContextVar[str] = ContextVar("current_route_key", default="")
# The caller's x-classify-priority as sent ("": none); serving/scheduling.py parses it.
current_priority: ContextVar[str] = ContextVar("current_priority", default="")

# A random process prefix and a counter: unique across replicas and restarts, and far cheaper per call
# than a uuid4 (no system call, no formatting of 128 bits).
_PREFIX = os.urandom(6).hex()
_counter = itertools.count(1)


def new_request_id() -> str:
    return f"{_PREFIX}-{next(_counter):x}"


def call_headers_of(context: grpc.aio.ServicerContext) -> tuple[str, str, str]:
    """The caller's ``x-request-id`` (a new id when it sent none or an empty one), ``x-classify-route-key``
    and ``x-classify-priority`` ("" when not sent), each trimmed to MAX_REQUEST_ID_CHARS: one pass over
    the metadata, the first value of each key."""
    found: dict[str, str] = {}
    for key, value in context.invocation_metadata() or ():
        if key in _CALL_HEADERS and key not in found:
            text = value if isinstance(value, str) else value.decode("utf-8", "replace")
            found[key] = text[:MAX_REQUEST_ID_CHARS]
    return (
        found.get(REQUEST_ID_HEADER) or new_request_id(),
        found.get(ROUTE_KEY_HEADER, ""),
        found.get(PRIORITY_HEADER, ""),
    )
