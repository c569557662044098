"""GPU set-up before TensorFlow's first op: log what the server runs on, and share the card's memory.

TensorFlow's default takes nearly all of a GPU's memory at start-up, so a second model server (or the
trainer) on the same card fails to allocate. Memory growth takes memory as models need it; a fixed cap
(``CLASSIFY_GPU_MEMORY_LIMIT_MB``) makes the share predictable when several processes are packed on a
card. On a machine without a GPU this only logs that it serves on CPU.

Everything here must run before TensorFlow's runtime is initialized (physical device settings are
frozen after that), so it never lists logical devices or runs an op.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)

# The server setting's environment variable, read here too for callers without settings.
MEMORY_LIMIT_ENV = "CLASSIFY_GPU_MEMORY_LIMIT_MB"


def memory_limit_mb(environ: Mapping[str, str]) -> int | None:
    """The per-GPU memory cap in MiB, or None for memory growth."""
    raw = environ.get(MEMORY_LIMIT_ENV, "").strip()
    if not raw:
        return None
    try:
        limit = int(raw)
    except ValueError:
        raise ValueError(f"{MEMORY_LIMIT_ENV} must be a whole number of MiB, got {raw!r}") from None
    if limit <= 0:
        raise ValueError(f"{MEMORY_LIMIT_ENV} must be positive, got {limit}")
    return limit


def configure_devices(
    config: Any = None, environ: Mapping[str, str] | None = None, limit_mb: int | None = None
) -> list[str]:
    """Enable memory growth (or the configured cap) on every visible GPU and log the devices.

    ``limit_mb`` is the server setting ``--gpu-memory-limit-mb``; without it the environment variable is
    read (the trainer and other processes use this module too). ``config`` is ``tf.config`` (injectable
    for tests); returns the GPU descriptions that were logged, empty on CPU.
    """
    if config is None:
        import tensorflow as tf

        config = tf.config
    limit = limit_mb or memory_limit_mb(os.environ if environ is None else environ)
    gpus = config.list_physical_devices("GPU")
    if not gpus:
        log.info("no GPU visible to TensorFlow: serving on CPU")
        return []
    described = []
    for gpu in gpus:
        if limit is None:
            config.experimental.set_memory_growth(gpu, True)
        else:
            capped = config.LogicalDeviceConfiguration(memory_limit=limit)
            config.set_logical_device_configuration(gpu, [capped])
        described.append(_describe(config, gpu))
    memory = f"memory capped at {limit} MiB each" if limit else "memory growth on"
    log.info("serving on %d GPU(s), %s: %s", len(gpus), memory, "; ".join(described))
    return described


def _describe(config: Any, gpu: Any) -> str:
    """Name and compute capability when TensorFlow knows them (it reads them without starting the runtime)."""
    try:
        details = config.experimental.get_device_details(gpu)
    except Exception:  # details are informative only; a driver that cannot give them must not stop serving
        details = {}
    name = details.get("device_name", "unknown model")
    capability = details.get("compute_capability")
    suffix = f", compute {capability[0]}.{capability[1]}" if capability else ""
    return f"{gpu.name} ({name}{suffix})"
