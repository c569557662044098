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


def request_id_of(context: grpc.aio.ServicerContext) -> str:
    """The caller's ``x-request-id`` (trimmed to a sane length), or a new id when it sent none."""
    for key, value in context.invocation_metadata() or ():
        if key == REQUEST_ID_HEADER:
            text = value if isinstance(value, str) else value.decode("utf-8", "replace")
            return text[:MAX_REQUEST_ID_CHARS] if text else new_request_id()
    return new_request_id()


def route_key_of(context: grpc.aio.ServicerContext) -> str:
    """The caller's ``x-classify-route-key`` (trimmed like a request id), or ""."""
    return _metadata_value(context, ROUTE_KEY_HEADER)


def priority_of(context: grpc.aio.ServicerContext) -> str:
    """The caller's ``x-classify-priority`` as sent (trimmed like a request id), or ""."""
    return _metadata_value(context, PRIORITY_HEADER)


def _metadata_value(context: grpc.aio.ServicerContext, name: str) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == name:
            text = value if isinstance(value, str) else value.decode("utf-8", "replace")
            return text[:MAX_REQUEST_ID_CHARS]
    return ""
