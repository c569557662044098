"""The real gRPC server built in this process, serving a fake model: protocol tests without training.

``ClassifyServer`` is the server ``classify-server`` runs (every servicer, the call guard, health,
reflection), on grpc.aio on loopback in a background event loop; only the runner loader is replaced by
``FakeRunner``, a deterministic numpy function of its rows (as MLServer tests its servers with a
``SumModel``). The model repository holds real ``model.json`` files with no SavedModel beside them.

These tests run in their own pytest process (``make test`` runs ``pytest tests/in_process`` after the
main suite): the server registers our KServe V2 protobuf messages, and tritonclient, which other test
modules import, defines the same message names, which one process's descriptor pool cannot hold twice
(see proto/VENDORED.md). For the same reason KServe V2 is called here through our generated stubs;
tritonclient's own calls are in tests/test_protocol_kserve.py, against the real server.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from classify_server.app import ClassifyServer
from classify_server.serving.repository import ModelSpec
from classify_server.settings import load_settings

START_SECONDS = 30.0
IMAGE_INPUT = {"kind": "image", "name": "images", "dtype": "uint8", "shape": [-1, 28, 28]}
TEXT_INPUT = {"kind": "text", "name": "texts", "dtype": "string", "shape": [-1]}
DIGITS = [str(digit) for digit in range(10)]
# The names, inputs and labels of the trained models, so requests and messages read as they do there.
FAKE_MODELS = {
    "mnist-cnn": ("image-classification", IMAGE_INPUT, DIGITS),
    "mnist-mlp": ("image-classification", IMAGE_INPUT, DIGITS),
    "imdb-lstm": ("text-classification", TEXT_INPUT, ["negative", "positive"]),
}


class FakeRunner:
    """Probabilities that are a fixed function of each row: a softmax over row statistics.

    Images: class k scores k times the mean pixel plus the pixel at a k-dependent place, so different
    images rank the classes differently. Texts: the number of words decides between the two labels.
    """

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.calls = 0

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.calls += 1
        classes = len(self.spec.labels)
        if self.spec.input.kind == "image":
            flat = batch.reshape(len(batch), -1).astype(np.float32) / 255.0
            ranks = np.arange(classes, dtype=np.float32)
            logits = flat.mean(axis=1, keepdims=True) * ranks + flat[:, (ranks * 71).astype(int) % 784]
        else:
            words = np.array([len(str(text).split()) for text in batch], dtype=np.float32)
            logits = np.stack([np.zeros_like(words), (words - 5) / 2], axis=1)
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


def load_fake(spec: ModelSpec) -> tuple[FakeRunner, float]:
    """The fake's runner loader: instant, nothing to warm."""
    return FakeRunner(spec), 0.0


def slow_loader(seconds: float) -> Callable[[ModelSpec], tuple[FakeRunner, float]]:
    """A loader that takes ``seconds`` per version, so loading can be watched from outside."""

    def load(spec: ModelSpec) -> tuple[FakeRunner, float]:
        time.sleep(seconds)
        return FakeRunner(spec), seconds

    return load


def write_fake_model(repository: Path, name: str, version: int = 1, quick: bool = True) -> Path:
    """``<repository>/<name>/<version>/model.json`` for one of FAKE_MODELS, without a SavedModel."""
    task, spec_input, labels = FAKE_MODELS[name]
    folder = repository / name / str(version)
    folder.mkdir(parents=True)
    document = {
        "name": name,
        "version": version,
        "task": task,
        "labels": labels,
        "signature": "serving_default",
        "input": spec_input,
        "output": {"name": "probabilities", "dtype": "float32", "shape": [-1, len(labels)]},
        "metrics": {"validation_accuracy": 0.5},
        "quick": quick,
    }
    (folder / "model.json").write_text(json.dumps(document))
    return folder


class InProcessServer:
    """A ClassifyServer on its own event loop thread; tests call it with ordinary blocking stubs."""

    def __init__(self, repository: Path, *flags: str, load_runner=load_fake) -> None:
        argv = [
            "--model-repository",
            str(repository),
            "--port",
            "0",
            "--metrics-port",
            "-1",
            "--http-port",
            "-1",
            *flags,
        ]
        self.settings = load_settings(argv)
        self._load_runner = load_runner
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="in-process-server", daemon=True)
        self.server: ClassifyServer | None = None
        self._started: asyncio.Future | None = None

    @property
    def target(self) -> str:
        assert self.server is not None
        return f"127.0.0.1:{self.server.port}"

    def _run(self, coroutine, timeout: float = START_SECONDS):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def listen(self) -> InProcessServer:
        """Build the server on its loop and begin ``start`` (listen, then load); returns once listening."""

        async def build() -> ClassifyServer:
            return ClassifyServer(self.settings, load_runner=self._load_runner)

        self._thread.start()
        self.server = self._run(build())
        self._started = asyncio.run_coroutine_threadsafe(self.server.start(), self._loop)
        deadline = time.monotonic() + START_SECONDS
        while self.server.port == 0 and not self._started.done() and time.monotonic() < deadline:
            time.sleep(0.005)
        return self

    def wait_started(self) -> InProcessServer:
        assert self._started is not None
        self._started.result(START_SECONDS)
        return self

    def stop(self) -> None:
        if self.server is not None:
            if self._started is not None:
                self._started.result(START_SECONDS)
            self._run(self.server.stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(START_SECONDS)
        self._loop.close()
