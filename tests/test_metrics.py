"""Prometheus metrics scraped over HTTP from the real server change as traffic flows."""

from __future__ import annotations

import urllib.request

import numpy as np
import pytest
from conftest import ServerProcess
from prometheus_client.parser import text_string_to_metric_families

from classify_client import Client, InvalidInputError, ModelNotFoundError

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(server: ServerProcess) -> Samples:
    with urllib.request.urlopen(server.metrics_url(), timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    assert key in samples, f"no sample {name}{labels}; have {sorted(k for k in samples if k[0] == name)}"
    return samples[key]


def growth(before: Samples, after: Samples, name: str, **labels: str) -> float:
    """How much a sample grew; one that did not exist before counts from zero."""
    key = (name, tuple(sorted(labels.items())))
    return value(after, name, **labels) - before.get(key, 0.0)


def test_metrics_follow_requests_batches_and_errors(server: ServerProcess) -> None:
    before = scrape(server)
    images = np.zeros((5, 28, 28), dtype=np.uint8)
    with Client(server.target) as client:
        for _ in range(7):
            client.classify("mnist-softmax", images=images)
        with pytest.raises(InvalidInputError):
            client.classify("mnist-softmax", texts=["not an image"])
        with pytest.raises(ModelNotFoundError):
            client.classify("no-such-model", images=images)
    after = scrape(server)
    ok = {"model": "mnist-softmax", "version": "1", "protocol": "native", "method": "Classify", "code": "OK"}
    assert growth(before, after, "classify_requests_total", **ok) == 7
    assert growth(before, after, "classify_requests_total", **{**ok, "code": "INVALID_ARGUMENT"}) == 1
    unknown = {
        "model": "_unknown",
        "version": "",
        "protocol": "native",
        "method": "Classify",
        "code": "NOT_FOUND",
    }
    assert growth(before, after, "classify_requests_total", **unknown) == 1
    latency = {"model": "mnist-softmax", "protocol": "native", "method": "Classify"}
    assert growth(before, after, "classify_request_seconds_count", **latency) == 8
    model = {"model": "mnist-softmax", "version": "1"}
    assert growth(before, after, "classify_batcher_rows_total", **model) == 35
    assert growth(before, after, "classify_batcher_executions_total", **model) == 7  # sequential: one each
    assert growth(before, after, "classify_batch_size_count", **model) == 7
    assert growth(before, after, "classify_batch_size_bucket", **model, le="4") == 0  # 5 rows: above 4
    assert growth(before, after, "classify_batch_size_bucket", **model, le="8") == 7
    assert growth(before, after, "classify_compute_seconds_count", **model) == 7
    assert growth(before, after, "classify_queue_seconds_count", **model) == 7
    assert value(after, "classify_queue_rows", **model) == 0
    assert value(after, "classify_model_load_seconds", **model) > 0
    assert value(after, "classify_model_state", **model, state="ready") == 1
