"""GPU set-up (server/devices.py): a no-op on CPU that leaves TensorFlow configurable, growth or a cap on GPUs."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

import pytest

from classify_server.serving.devices import MEMORY_LIMIT_ENV, configure_devices, memory_limit_mb


def test_on_this_cpu_machine_it_changes_nothing_and_leaves_the_runtime_unstarted() -> None:
    # In a fresh interpreter: thread pools (set right after, by the runner) can only be changed while
    # TensorFlow's runtime has not started, so configure_devices must not start it.
    script = (
        "import logging, sys; logging.basicConfig(level=logging.INFO, stream=sys.stdout)\n"
        "from classify_server.serving.devices import configure_devices\n"
        "import tensorflow as tf\n"
        "assert configure_devices() == []\n"
        "tf.config.threading.set_intra_op_parallelism_threads(1)\n"
        "print('threads still configurable')\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "serving on CPU" in run.stdout
    assert "threads still configurable" in run.stdout


@dataclass
class FakeGPU:
    name: str
    device_type: str = "GPU"


@dataclass
class FakeConfig:
    """tf.config's device calls, recording what the server asked for."""

    gpus: list[FakeGPU]
    growth: dict[str, bool] = field(default_factory=dict)
    limits: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.experimental = self

    def list_physical_devices(self, kind: str) -> list[FakeGPU]:
        return list(self.gpus) if kind == "GPU" else []

    def set_memory_growth(self, gpu: FakeGPU, enable: bool) -> None:
        self.growth[gpu.name] = enable

    def LogicalDeviceConfiguration(self, memory_limit: int) -> int:
        return memory_limit

    def set_logical_device_configuration(self, gpu: FakeGPU, logical: list[Any]) -> None:
        self.limits[gpu.name] = logical[0]

    def get_device_details(self, gpu: FakeGPU) -> dict[str, Any]:
        return {"device_name": "NVIDIA L4", "compute_capability": (8, 9)}


GPUS = [FakeGPU("/physical_device:GPU:0"), FakeGPU("/physical_device:GPU:1")]


def test_every_gpu_gets_memory_growth_by_default_and_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    config = FakeConfig(GPUS)
    with caplog.at_level(logging.INFO, logger="classify_server.serving.devices"):
        described = configure_devices(config, environ={})
    assert config.growth == {gpu.name: True for gpu in GPUS}
    assert config.limits == {}
    assert described[1] == "/physical_device:GPU:1 (NVIDIA L4, compute 8.9)"
    assert "2 GPU(s), memory growth on" in caplog.text


def test_a_memory_cap_replaces_growth_on_every_gpu() -> None:
    config = FakeConfig(GPUS)
    configure_devices(config, environ={MEMORY_LIMIT_ENV: "2048"})
    assert config.limits == {gpu.name: 2048 for gpu in GPUS}
    # TensorFlow refuses memory growth on a GPU that has a logical device configuration.
    assert config.growth == {}


def test_without_a_gpu_nothing_is_configured() -> None:
    config = FakeConfig([])
    assert configure_devices(config, environ={MEMORY_LIMIT_ENV: "2048"}) == []
    assert config.growth == {} and config.limits == {}


@pytest.mark.parametrize("raw", ["2GB", "0", "-5"])
def test_a_bad_memory_cap_is_refused_with_the_variable_named(raw: str) -> None:
    with pytest.raises(ValueError, match=MEMORY_LIMIT_ENV):
        memory_limit_mb({MEMORY_LIMIT_ENV: raw})


def test_an_empty_memory_cap_means_growth() -> None:
    assert memory_limit_mb({MEMORY_LIMIT_ENV: " "}) is None
