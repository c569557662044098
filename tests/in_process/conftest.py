"""Fixtures of the in-process server tests; the server and the fake model are in fake_serving.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fake_serving import FAKE_MODELS, InProcessServer, load_fake, write_fake_model


@pytest.fixture
def serve_in_process() -> Iterator[Callable[..., InProcessServer]]:
    """Start in-process servers (``listen`` only: the test decides when to wait); all stop afterwards."""
    started: list[InProcessServer] = []

    def start(repository: Path, *flags: str, load_runner=load_fake) -> InProcessServer:
        started.append(InProcessServer(repository, *flags, load_runner=load_runner).listen())
        return started[-1]

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def fake_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mnist-cnn, mnist-mlp and imdb-lstm as fakes, version 1 each, as the quick models are exported."""
    repository = tmp_path_factory.mktemp("fake-models")
    for name in FAKE_MODELS:
        write_fake_model(repository, name)
    return repository


@pytest.fixture(scope="module")
def fake_server(fake_repository: Path) -> Iterator[InProcessServer]:
    """One in-process server for a module, serving every fake model."""
    server = InProcessServer(fake_repository).listen().wait_started()
    yield server
    server.stop()
