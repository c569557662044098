"""The answer cache (--cache-rows) on a real server: repeated rows skip the batcher, the bounds evict, and
a new version never answers with the old version's cached probabilities.

Version 1 of mnist-softmax is the quick softmax model; the version published during the test is the quick
MLP, whose answers differ, so a stale cached answer would show.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from conftest import ServerProcess, run_cli
from lifecycle import publish
from test_metrics import scrape, value

from classify_client import Client

MODEL = "mnist-softmax"
ROWS = np.random.default_rng(11).integers(0, 256, size=(6, 28, 28), dtype=np.uint8)


def batcher_rows(server: ServerProcess, version: int) -> float:
    return value(scrape(server), "classify_batcher_rows_total", model=MODEL, version=str(version))


def cache_figure(server: ServerProcess, name: str, version: int) -> float:
    return value(scrape(server), f"classify_cache_{name}", model=MODEL, version=str(version))


def wait_for_version(client: Client, version: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = {m.name: m for m in client.models()}[MODEL]
        if [v.version for v in info.versions] == [version] and info.state == "ready":
            return
        time.sleep(0.2)
    raise AssertionError(f"version {version} did not replace the others in time")


def test_repeated_rows_hit_and_a_new_version_never_serves_the_old_answers(
    quick_repository, tmp_path, private_server
) -> None:
    repository = tmp_path / "cached"
    publish(repository / MODEL, quick_repository / "mnist-softmax" / "1", 1)
    server = private_server(repository, "--metrics-port=0", "--poll-seconds=0.3", "--cache-rows=8")
    server.wait_serving()
    with Client(server.target, timeout=30) as client:
        first = client.classify(MODEL, images=ROWS[:4], return_probabilities=True)
        again = client.classify(MODEL, images=ROWS[:4], return_probabilities=True)
        assert np.array_equal(first.probabilities, again.probabilities)
        assert batcher_rows(server, 1) == 4  # the repeat never reached the model
        assert (cache_figure(server, "hits_total", 1), cache_figure(server, "misses_total", 1)) == (4, 4)
        mixed = client.classify(MODEL, images=ROWS[2:6], return_probabilities=True)  # 2 seen, 2 new
        assert np.array_equal(mixed.probabilities[:2], first.probabilities[2:])
        assert batcher_rows(server, 1) == 6

        client.classify(MODEL, images=np.random.default_rng(5).integers(0, 256, (5, 28, 28), dtype=np.uint8))
        assert cache_figure(server, "rows", 1) == 8  # bounded by --cache-rows
        assert cache_figure(server, "evictions_total", 1) == 3

        publish(repository / MODEL, quick_repository / "mnist-mlp" / "1", 2)
        wait_for_version(client, 2)
        newer = client.classify(MODEL, images=ROWS[:4], return_probabilities=True)
        assert newer.version == 2
        assert not np.allclose(newer.probabilities, first.probabilities, atol=1e-3)
        assert batcher_rows(server, 2) == 4 and cache_figure(server, "misses_total", 2) == 4
        samples = scrape(server)
        assert ("classify_cache_rows", (("model", MODEL), ("version", "1"))) not in samples  # dropped


@pytest.mark.parametrize("flag", ["--cache-rows=-1", "--cache-max-mb=0"])
def test_bad_cache_settings_are_refused(tmp_path, flag) -> None:
    result = run_cli("classify-server", "--model-repository", tmp_path, flag, check=False, timeout=60)
    assert result.returncode == 2 and f"invalid settings: {flag.split('=')[0]}" in result.stderr
