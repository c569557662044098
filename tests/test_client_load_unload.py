"""``load_model`` / ``unload_model`` of both clients against a real server on its own repository copy.

The two clients run the same scenario, so the async pair is held to the sync one's semantics: unload
answers ``unloaded`` and the model stops answering, load serves it again, a model not on disk is
ModelNotFoundError.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import ServerProcess, copy_model, health_status, launch_server

from classify_client import AsyncClient, Client, ModelInfo, ModelNotFoundError, UnavailableError

MODEL = "mnist-softmax"
DIGITS = np.zeros((2, 28, 28), dtype=np.uint8)


@pytest.fixture(scope="module")
def admin_server(quick_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server of its own: these tests unload models, which the shared session server must keep."""
    repository = tmp_path_factory.mktemp("admin-repository")
    copy_model(quick_repository, MODEL, repository)
    started = launch_server(repository, tmp_path_factory.mktemp("admin-logs"))
    try:
        started.wait_serving()
        yield started
    finally:
        started.terminate()


def settled_health(target: str, expected: str = "NOT_SERVING", timeout: float = 10.0) -> str:
    """The model's health once it reads ``expected`` (the health service follows the unload), or the last
    status seen when it never does."""
    deadline = time.monotonic() + timeout
    status = health_status(target, MODEL)
    while status != expected and time.monotonic() < deadline:
        time.sleep(0.1)
        status = health_status(target, MODEL)
    return status


def run_with_sync_client(target: str) -> list[object]:
    seen: list[object] = []
    with Client(target, timeout=60) as client:
        seen.append(client.unload_model(MODEL))
        seen.append(settled_health(target))
        with pytest.raises(UnavailableError, match="unloaded on request"):
            client.classify(MODEL, images=DIGITS)
        seen.append(client.load_model(MODEL))
        seen.append(client.classify(MODEL, images=DIGITS).version)
        with pytest.raises(ModelNotFoundError, match="not-on-disk"):
            client.load_model("not-on-disk")
    return seen


def run_with_async_client(target: str) -> list[object]:
    async def scenario() -> list[object]:
        seen: list[object] = []
        async with AsyncClient(target, timeout=60) as client:
            seen.append(await client.unload_model(MODEL))
            seen.append(settled_health(target))
            with pytest.raises(UnavailableError, match="unloaded on request"):
                await client.classify(MODEL, images=DIGITS)
            seen.append(await client.load_model(MODEL))
            seen.append((await client.classify(MODEL, images=DIGITS)).version)
            with pytest.raises(ModelNotFoundError, match="not-on-disk"):
                await client.load_model("not-on-disk")
        return seen

    return asyncio.run(scenario())


@pytest.mark.parametrize("scenario", [run_with_sync_client, run_with_async_client], ids=["sync", "async"])
def test_unload_then_load_serves_the_model_again(admin_server: ServerProcess, scenario) -> None:
    unloaded, health_after_unload, loaded, version = scenario(admin_server.target)
    assert isinstance(unloaded, ModelInfo) and isinstance(loaded, ModelInfo)
    assert (unloaded.name, unloaded.state) == (MODEL, "unloaded")
    assert health_after_unload == "NOT_SERVING"
    assert (loaded.name, loaded.state) == (MODEL, "ready")
    assert [(v.version, v.state) for v in loaded.versions] == [(1, "ready")]
    assert version == 1
