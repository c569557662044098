"""``Client`` and ``AsyncClient`` expose the same methods with the same signatures.

Both are thin shells over ``classify_client.core.ClientCore``; this test keeps them from drifting apart
again. The only differences allowed are listed here, each with its reason.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import pytest

from classify_client import AsyncClient, Client
from classify_client.core import ClientCore

# Public names only one of the two has, and why.
SYNC_ONLY = {
    "classify_future": "a grpc.Future without awaiting; with asyncio, asyncio.create_task(classify(...))",
    "__enter__": "`with Client(...)`; the async client is an async context manager",
    "__exit__": "see __enter__",
}
ASYNC_ONLY = {
    "__aenter__": "`async with AsyncClient(...)`",
    "__aexit__": "see __aenter__",
}
# Annotations that differ by nature: (method, parameter or "return") -> (sync, async).
ANNOTATION_DIFFERENCES = {
    ("classify_stream", "requests"): (
        "Iterable[StreamRequest]",
        "Iterable[StreamRequest] | AsyncIterable[StreamRequest]",
    ),
    ("classify_stream", "return"): ("Iterator[StreamReply]", "AsyncIterator[StreamReply]"),
}
CONTEXT_DUNDERS = {"__enter__", "__exit__", "__aenter__", "__aexit__"}


def public_methods(cls: type) -> dict[str, Callable]:
    return {
        name: member
        for name, member in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_") or name in CONTEXT_DUNDERS
    }


def test_both_clients_have_the_same_public_methods_but_the_listed_ones() -> None:
    sync, asynchronous = public_methods(Client), public_methods(AsyncClient)
    assert set(sync) - set(asynchronous) == set(SYNC_ONLY)
    assert set(asynchronous) - set(sync) == set(ASYNC_ONLY)
    assert {"load_model", "unload_model", "classify", "classify_stream", "wait_until_ready"} <= set(sync)


@pytest.mark.parametrize("name", sorted(set(public_methods(Client)) & set(public_methods(AsyncClient))))
def test_a_shared_method_has_the_same_signature(name: str) -> None:
    sync = inspect.signature(getattr(Client, name))
    asynchronous = inspect.signature(getattr(AsyncClient, name))
    sync_parameters, async_parameters = list(sync.parameters.values()), list(asynchronous.parameters.values())
    assert [(p.name, p.kind, p.default) for p in sync_parameters] == [
        (p.name, p.kind, p.default) for p in async_parameters
    ]
    for ours, theirs in zip(sync_parameters, async_parameters, strict=True):
        expected = ANNOTATION_DIFFERENCES.get((name, ours.name), (ours.annotation, ours.annotation))
        assert (ours.annotation, theirs.annotation) == expected, f"{name}({ours.name})"
    expected_return = ANNOTATION_DIFFERENCES.get((name, "return"), (sync.return_annotation,) * 2)
    # An async method's annotation names what awaiting it gives, so it equals the sync return.
    assert (sync.return_annotation, asynchronous.return_annotation) == expected_return, f"{name} returns"


@pytest.mark.parametrize("name", sorted(set(public_methods(AsyncClient)) - {"classify_stream"}))
def test_every_async_method_is_a_coroutine(name: str) -> None:
    assert inspect.iscoroutinefunction(getattr(AsyncClient, name))


def test_the_async_stream_is_an_async_generator_and_the_sync_one_a_generator() -> None:
    assert inspect.isasyncgenfunction(AsyncClient.classify_stream)
    assert inspect.isgeneratorfunction(Client.classify_stream)


def test_both_clients_share_the_core_constructor_and_attributes() -> None:
    assert Client.__init__ is AsyncClient.__init__ is ClientCore.__init__
    parameters = inspect.signature(Client).parameters
    assert list(parameters)[:1] == ["target"]
    assert {"timeout", "headers", "credentials", "token", "retry", "load_balancing", "options"} <= set(
        parameters
    )


def test_a_method_of_one_client_is_defined_on_it_not_inherited_from_the_core() -> None:
    # The core holds no public methods: a public method added there would reach one client's users with
    # the wrong transport (blocking inside asyncio, or a coroutine in sync code).
    assert [name for name in public_methods(ClientCore) if name not in CONTEXT_DUNDERS] == []
