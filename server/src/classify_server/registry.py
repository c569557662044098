"""Loaded models by name and version, with the state of each model for health and ListModels."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .batcher import BatchingPolicy, DynamicBatcher
from .errors import ModelNotFoundError, UnavailableError
from .repository import ModelSpec, ModelSpecError, latest_versions, read_model_spec
from .runner import SavedModelRunner

log = logging.getLogger(__name__)

LOADING, READY, FAILED = "loading", "ready", "failed"


@dataclass
class LoadedModel:
    spec: ModelSpec
    batcher: DynamicBatcher


@dataclass
class ModelState:
    name: str
    state: str
    version: int
    reason: str = ""
    task: str = ""


StateListener = Callable[[ModelState], None]


class ModelRegistry:
    def __init__(self, root: Path, policy: BatchingPolicy, on_state: StateListener | None = None) -> None:
        self.root = root
        self._policy = policy
        self._on_state = on_state or (lambda state: None)
        self._loaded: dict[str, dict[int, LoadedModel]] = {}
        self._states: dict[str, ModelState] = {}

    def states(self) -> list[ModelState]:
        return [self._states[name] for name in sorted(self._states)]

    def ready_count(self) -> int:
        return sum(1 for state in self._states.values() if state.state == READY)

    async def load_repository(self) -> None:
        """Load and warm the newest version of every model; a broken one is reported, not fatal."""
        version_paths = latest_versions(self.root)
        for path in version_paths:
            self._set_state(ModelState(path.parent.name, LOADING, int(path.name)))
        for path in version_paths:
            await self._load_version(path)

    async def _load_version(self, path: Path) -> None:
        name, version = path.parent.name, int(path.name)
        try:
            spec = read_model_spec(path)
            runner, seconds = await asyncio.to_thread(_load_and_warm, spec)
        except ModelSpecError as exc:
            log.error("model %s version %d failed to load: %s", name, version, exc)
            self._set_state(ModelState(name, FAILED, version, str(exc)))
            return
        batcher = DynamicBatcher(name, runner, self._policy)
        batcher.start()
        self._loaded.setdefault(name, {})[version] = LoadedModel(spec, batcher)
        log.info("model %s version %d ready (load and warmup %.2f s)", name, version, seconds)
        self._set_state(ModelState(name, READY, version, task=spec.task))

    def _set_state(self, state: ModelState) -> None:
        self._states[state.name] = state
        self._on_state(state)

    def resolve(self, name: str, version: int | None) -> LoadedModel:
        """The loaded model for a request; version None means the newest ready one."""
        versions = self._loaded.get(name)
        if not versions:
            raise self._missing_model_error(name)
        if version is None:
            return versions[max(versions)]
        if version not in versions:
            loaded = ", ".join(str(v) for v in sorted(versions))
            raise ModelNotFoundError(f"model {name!r} has no version {version}; loaded versions: {loaded}")
        return versions[version]

    def loaded(self) -> list[LoadedModel]:
        return [versions[v] for _, versions in sorted(self._loaded.items()) for v in sorted(versions)]

    def versions(self, name: str) -> list[int]:
        return sorted(self._loaded.get(name, {}))

    def _missing_model_error(self, name: str) -> Exception:
        state = self._states.get(name)
        if state is not None and state.state == LOADING:
            return UnavailableError(f"model {name!r} is still loading; retry shortly")
        if state is not None and state.state == FAILED:
            return UnavailableError(f"model {name!r} failed to load: {state.reason}")
        known = ", ".join(sorted(self._states)) or "none"
        return ModelNotFoundError(f"model {name!r} not found; models in this server: {known}")

    async def close(self) -> None:
        """Drain every batcher (queued requests finish), then stop their workers."""
        for versions in self._loaded.values():
            for model in versions.values():
                await model.batcher.close()


def _load_and_warm(spec: ModelSpec) -> tuple[SavedModelRunner, float]:
    runner = SavedModelRunner(spec)
    warm = runner.warmup()
    return runner, runner.load_seconds + warm
