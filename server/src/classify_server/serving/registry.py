"""The models being served, kept in step with the repository on disk.

``reconcile`` compares what the version policy wants from disk with what is loaded: it loads and warms
new versions while the old ones keep serving, then moves traffic (the newest ready version answers
unversioned requests) and drains the versions no longer wanted before dropping them. A version that
fails to load is reported with its reason and never replaces a working one; it is retried only when its
files change. All of this runs on the event loop; loading itself runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from classify_server.errors import ModelNotFoundError, UnavailableError
from classify_server.logs import lifecycle
from classify_server.serving.batcher import BatchingPolicy, DynamicBatcher, RunBatch
from classify_server.serving.explain_batcher import ExplainBatcher
from classify_server.serving.heap import settle_after_model_change
from classify_server.serving.labels import VersionLabels
from classify_server.serving.repository import (
    ModelSpec,
    read_model_spec,
    scan_repository,
    version_fingerprint,
)
from classify_server.serving.runner import SavedModelRunner
from classify_server.serving.version_policy import VersionPolicy

log = logging.getLogger(__name__)

LOADING, READY, FAILED, UNLOADING, UNLOADED = "loading", "ready", "failed", "unloading", "unloaded"


@dataclass
class LoadedModel:
    spec: ModelSpec
    batcher: DynamicBatcher
    load_seconds: float = 0.0  # loading and warming, until it could serve
    # Its explain signatures' scheduler; None when the runner is no SavedModel (tests' numpy models).
    explainer: ExplainBatcher | None = None


@dataclass
class VersionState:
    version: int
    state: str
    reason: str = ""


@dataclass
class ModelState:
    """A model as health checks and ListModels see it."""

    name: str
    state: str  # ready when any version is ready
    version: int  # the version unversioned requests get (or the newest known when none is ready)
    reason: str = ""
    task: str = ""
    versions: list[VersionState] = field(default_factory=list)


@dataclass
class _Model:
    name: str
    ready: dict[int, LoadedModel] = field(default_factory=dict)
    states: dict[int, VersionState] = field(default_factory=dict)
    failed_fingerprints: dict[int, tuple[float, ...]] = field(default_factory=dict)
    task: str = ""
    held: bool = False  # unloaded on request: polling leaves it alone until it is loaded again

    def summary(self) -> ModelState:
        versions = [self.states[v] for v in sorted(self.states)]
        if self.ready:
            return ModelState(self.name, READY, max(self.ready), task=self.task, versions=versions)
        for state in (LOADING, UNLOADING, FAILED):
            matching = [v for v in versions if v.state == state]
            if matching:
                newest = matching[-1]
                return ModelState(self.name, state, newest.version, newest.reason, self.task, versions)
        return ModelState(self.name, UNLOADED if self.held else LOADING, 0, task=self.task, versions=versions)


StateListener = Callable[[ModelState], None]
PolicyLookup = Callable[[str], VersionPolicy]
# Loads and warms one version, in a worker thread: what the batcher calls, and the seconds it took. The
# server loads SavedModels; tests give a small numpy model here, so protocol tests need no trained model.
RunnerLoader = Callable[[ModelSpec], tuple[RunBatch, float]]


class ModelRegistry:
    def __init__(
        self,
        root: Path,
        batching: BatchingPolicy,
        versions_for: PolicyLookup,
        on_state: StateListener | None = None,
        load_runner: RunnerLoader | None = None,
        *,
        labels: VersionLabels | None = None,
        explain_slice_seconds: float = 0.0,
    ) -> None:
        self.root = root
        self._explain_slice_seconds = explain_slice_seconds
        self.labels = labels or VersionLabels()
        self._load_runner = load_runner or load_saved_model
        self._batching = batching
        self._versions_for = versions_for
        self._on_state = on_state or (lambda state: None)
        self._models: dict[str, _Model] = {}
        self._lock = asyncio.Lock()  # one reconcile, load or unload at a time
        self._models_changed = False  # since the heap was last settled (heap.py)

    # -- Queries -------------------------------------------------------------------------------------------

    def states(self) -> list[ModelState]:
        return [self._models[name].summary() for name in sorted(self._models)]

    def ready_count(self) -> int:
        return sum(1 for model in self._models.values() if model.ready)

    def loaded(self) -> list[LoadedModel]:
        return [
            model.ready[version]
            for _, model in sorted(self._models.items())
            for version in sorted(model.ready)
        ]

    def versions(self, name: str) -> list[int]:
        model = self._models.get(name)
        return sorted(model.ready) if model else []

    def resolve(self, name: str, version: int | None, label: str = "") -> LoadedModel:
        """The loaded model for a request: by version, by label, else as the labels route (newest)."""
        model = self._models.get(name)
        if model is None:
            known = ", ".join(sorted(self._models)) or "none"
            raise ModelNotFoundError(f"model {name!r} not found; models in this server: {known}")
        if label:
            return model.ready[self.labels.version_of(name, label, model.ready)]
        if version is None and model.ready:
            return model.ready[self.labels.route(name, model.ready)]
        if version is not None and version in model.ready:
            return model.ready[version]
        raise self._unavailable(model, version)

    @staticmethod
    def _unavailable(model: _Model, version: int | None) -> Exception:
        state = model.states.get(version) if version is not None else model.summary()
        label = f"model {model.name!r}" + (f" version {version}" if version is not None else "")
        if model.held:
            return UnavailableError(f"{label} was unloaded on request; load it again to serve it")
        if state is not None and state.state in (LOADING, UNLOADING):
            return UnavailableError(f"{label} is {state.state}; retry shortly")
        if state is not None and state.state == FAILED:
            return UnavailableError(f"{label} failed to load: {state.reason}")
        ready = ", ".join(str(v) for v in sorted(model.ready)) or "none"
        return ModelNotFoundError(f"model {model.name!r} has no version {version}; ready versions: {ready}")

    # -- Changes -------------------------------------------------------------------------------------------

    async def reconcile(self, only: str | None = None) -> None:
        """Bring the loaded versions in line with the disk and the version policies."""
        async with self._lock:
            try:
                await self._reconcile(only)
            finally:
                self._settle_heap()

    async def load_model(self, name: str) -> ModelState:
        """Serve ``name`` again after an unload (or pick up its new versions now)."""
        async with self._lock:
            if name not in scan_repository(self.root):
                raise ModelNotFoundError(f"model {name!r} has no version folders under {self.root}")
            if name in self._models:
                self._models[name].held = False
            try:
                await self._reconcile(name)
            finally:
                self._settle_heap()
            return self._models[name].summary()

    async def unload_model(self, name: str) -> ModelState:
        """Stop serving every version of ``name`` (queued requests finish first) until loaded again."""
        async with self._lock:
            model = self._models.get(name)
            if model is None:
                raise ModelNotFoundError(f"model {name!r} not found; models in this server: {self._names()}")
            model.held = True
            for version in sorted(model.ready):
                await self._unload(model, version)
            self._settle_heap()
            self._publish(model)
            return model.summary()

    async def watch(self, poll_seconds: float) -> None:
        """Reconcile every ``poll_seconds`` until cancelled; a failing pass is logged, never fatal."""
        while True:
            await asyncio.sleep(poll_seconds)
            try:
                await self.reconcile()
            except Exception:
                log.exception("repository poll failed; serving what is loaded and trying again")

    async def close(self) -> None:
        """Drain every batcher (queued requests finish), then drop every model."""
        async with self._lock:
            for model in self._models.values():
                for version in sorted(model.ready):
                    await self._unload(model, version)

    def _settle_heap(self) -> None:
        if self._models_changed:
            self._models_changed = False
            settle_after_model_change()

    def _names(self) -> str:
        return ", ".join(sorted(self._models)) or "none"

    async def _reconcile(self, only: str | None) -> None:
        on_disk = scan_repository(self.root)
        names = sorted((set(on_disk) | set(self._models)) if only is None else {only})
        # Models load side by side: TensorFlow releases the GIL while it reads and warms a SavedModel, so
        # start-up takes about as long as the slowest model instead of the sum of all of them.
        outcomes = await asyncio.gather(
            *(self._reconcile_name(name, on_disk.get(name, {})) for name in names), return_exceptions=True
        )
        for outcome in outcomes:  # every model got its turn; now report the first failure, if any
            if isinstance(outcome, BaseException):
                raise outcome

    async def _reconcile_name(self, name: str, on_disk: dict[int, Path]) -> None:
        model = self._models.setdefault(name, _Model(name))
        if not model.held:
            await self._reconcile_model(model, on_disk)
        if not on_disk and not model.ready and not model.held:
            del self._models[name]  # removed from disk and fully drained: forget it
        else:
            self._publish(model)

    async def _reconcile_model(self, model: _Model, on_disk: dict[int, Path]) -> None:
        wanted = self._versions_for(model.name).select(on_disk)
        for version in sorted(wanted - set(model.ready), reverse=True):
            fingerprint = version_fingerprint(on_disk[version])
            if model.failed_fingerprints.get(version) == fingerprint:
                continue  # failed before and unchanged since: do not retry on every poll
            await self._load(model, version, on_disk[version], fingerprint)
        stale = set(model.ready) - wanted
        # Availability first: retire old versions only once a wanted one serves, or the model left the disk.
        if stale and (set(model.ready) & wanted or not on_disk):
            for version in sorted(stale):
                await self._unload(model, version)
        for version in [v for v in model.states if v not in on_disk and v not in model.ready]:
            del model.states[version]
            model.failed_fingerprints.pop(version, None)

    def _policy_for(self, spec: ModelSpec) -> BatchingPolicy:
        """The server's batching, with the rows per execution the model's own model.json asks for."""
        if spec.max_batch_size is None:
            return self._batching
        rows = spec.max_batch_size
        largest_preferred = max(self._batching.preferred_batch_sizes, default=None)
        if largest_preferred is not None and rows > largest_preferred:
            # Preferred sizes keep the set of execution shapes fixed (XLA compiles each new one, for
            # seconds): the operator's largest size wins over the exporter's larger batches.
            log.info(
                "model %s: model.json asks for %d rows per execution; capped at %d, the largest "
                "--preferred-batch-sizes",
                spec.name,
                rows,
                largest_preferred,
            )
            rows = largest_preferred
        return replace(self._batching, max_batch_size=rows)

    async def _load(self, model: _Model, version: int, path: Path, fingerprint: tuple[float, ...]) -> None:
        model.states[version] = VersionState(version, LOADING)
        log.info(
            "model %s version %d loading from %s",
            model.name,
            version,
            path,
            extra=lifecycle("loading", model.name, version, path=str(path)),
        )
        self._publish(model)
        try:
            spec = read_model_spec(path)
            runner, seconds = await asyncio.to_thread(self._load_runner, spec)
        except Exception as exc:  # a broken export must never take the server down
            log.error(
                "model %s version %d failed to load: %s",
                model.name,
                version,
                exc,
                extra=lifecycle("failed", model.name, version, reason=str(exc)),
            )
            model.states[version] = VersionState(version, FAILED, str(exc))
            model.failed_fingerprints[version] = fingerprint
            return
        batcher = DynamicBatcher(model.name, runner, self._policy_for(spec))
        batcher.start()
        explain = getattr(runner, "explainer", None)
        explainer = (
            None
            if explain is None
            else ExplainBatcher(
                model.name,
                explain,
                self._batching.max_batch_size,
                self._batching.queue_capacity_rows,
                self._explain_slice_seconds,
            )
        )
        model.ready[version] = LoadedModel(spec, batcher, seconds, explainer)
        self._models_changed = True
        model.task = spec.task
        model.states[version] = VersionState(version, READY)
        model.failed_fingerprints.pop(version, None)
        log.info(
            "model %s version %d ready (load and warmup %.2f s)",
            model.name,
            version,
            seconds,
            extra=lifecycle("ready", model.name, version, seconds=round(seconds, 3)),
        )
        self._publish(model)

    async def _unload(self, model: _Model, version: int) -> None:
        loaded = model.ready.pop(version)  # from here on no new request can reach it
        model.states[version] = VersionState(version, UNLOADING)
        log.info(
            "model %s version %d unloading: queued requests finish first",
            model.name,
            version,
            extra=lifecycle("unloading", model.name, version),
        )
        self._publish(model)
        # Requests already queued or running finish first; shielded so a cancelled poll cannot cut a drain.
        if loaded.explainer is not None:
            await asyncio.shield(loaded.explainer.close())
        await asyncio.shield(loaded.batcher.close())
        del model.states[version]
        self._models_changed = True
        extra = lifecycle("unloaded", model.name, version)
        log.info("model %s version %d unloaded", model.name, version, extra=extra)

    def _publish(self, model: _Model) -> None:
        self._on_state(model.summary())


def load_saved_model(spec: ModelSpec) -> tuple[SavedModelRunner, float]:
    """The server's runner loader: the SavedModel, warmed; seconds for both."""
    runner = SavedModelRunner(spec)
    warm = runner.warmup()
    return runner, runner.load_seconds + warm
