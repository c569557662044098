"""An opt-in cache of answers per model version: a row seen before is answered without the batcher.

Keys are a hash of the model, its version and the input row's bytes (pixels, or the text's UTF-8), so a
request mixing seen and new rows sends only the new ones to the model. Each loaded version has its own
LRU, bounded both in rows (``--cache-rows``) and in bytes (``--cache-max-mb``), and belongs to that
loaded version only: when the version unloads its cache is dropped, and a version loaded again (or a new
one) starts empty, so an answer of one version is never served as another's.

Everything here runs on the event loop's thread (lookups and stores happen in the request's coroutine),
so the LRU needs no lock.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

from classify_server.serving.registry import READY, LoadedModel, ModelState

# Bytes an entry costs beyond its probabilities: the key, the OrderedDict node, the array's header.
ENTRY_OVERHEAD_BYTES = 200


@dataclass
class CacheStats:
    hits: int = 0  # rows answered from the cache
    misses: int = 0  # rows sent to the model
    evictions: int = 0  # rows dropped to stay within the bounds


class RowCache:
    """One loaded version's answers: row key -> probabilities, least recently used first."""

    def __init__(self, model: LoadedModel, max_rows: int, max_bytes: int) -> None:
        self.owner = model
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self.stats = CacheStats()
        self.bytes = 0
        self._prefix = f"{model.spec.name}\0{model.spec.version}\0".encode()
        self._entries: OrderedDict[bytes, np.ndarray] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def key(self, row: np.ndarray | str) -> bytes:
        data = row.encode("utf-8") if isinstance(row, str) else row.tobytes()
        return hashlib.blake2b(self._prefix + data, digest_size=16).digest()

    def get(self, key: bytes) -> np.ndarray | None:
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
        return found

    def put(self, key: bytes, probabilities: np.ndarray) -> None:
        if key in self._entries:
            return
        self._entries[key] = probabilities
        self.bytes += probabilities.nbytes + ENTRY_OVERHEAD_BYTES
        while self._entries and (len(self._entries) > self.max_rows or self.bytes > self.max_bytes):
            _, dropped = self._entries.popitem(last=False)
            self.bytes -= dropped.nbytes + ENTRY_OVERHEAD_BYTES
            self.stats.evictions += 1


class ResponseCache:
    """The row caches of every loaded version whose model has a cache size."""

    def __init__(self, rows_for: Callable[[str], int], max_bytes: int) -> None:
        self._rows_for = rows_for
        self._max_bytes = max_bytes
        self._caches: dict[tuple[str, int], RowCache] = {}

    def rows_for(self, model: LoadedModel) -> RowCache | None:
        """The cache of this loaded version, made on first use; None when its model has none."""
        key = (model.spec.name, model.spec.version)
        cache = self._caches.get(key)
        if cache is not None and cache.owner is model:
            return cache
        rows = self._rows_for(model.spec.name)
        if rows <= 0:
            return None
        # A different owner is the same version number loaded again: its files may differ, start over.
        cache = self._caches[key] = RowCache(model, rows, self._max_bytes)
        return cache

    def caches(self) -> list[RowCache]:
        entries = list(self._caches.items())  # one step: the metrics thread reads while the loop writes
        return [cache for _, cache in sorted(entries, key=lambda entry: entry[0])]

    def forget_unready(self, state: ModelState) -> None:
        """Drop the caches of a model's versions that no longer serve (the registry's state listener)."""
        serving = {v.version for v in state.versions if v.state == READY}
        for key in [key for key in self._caches if key[0] == state.name and key[1] not in serving]:
            del self._caches[key]


async def classify_cached(
    cache: RowCache, batch: np.ndarray, run: Callable[[np.ndarray], Awaitable[np.ndarray]]
) -> np.ndarray:
    """Probabilities of every row: cached rows from the cache, the others from ``run`` (the batcher)."""
    keys = [cache.key(row) for row in batch]
    found = [cache.get(key) for key in keys]
    missing = [position for position, answer in enumerate(found) if answer is None]
    cache.stats.hits += len(keys) - len(missing)
    cache.stats.misses += len(missing)
    if not missing:
        return np.stack(found)  # type: ignore[arg-type]
    computed = await run(batch if len(missing) == len(keys) else batch[missing])
    for position, probabilities in zip(missing, computed, strict=True):
        # A copy: a view would keep the whole batch's array alive and be counted at a row's size.
        found[position] = row = probabilities.copy()
        cache.put(keys[position], row)
    return np.stack(found)  # type: ignore[arg-type]
