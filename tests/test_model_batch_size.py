"""A model's own max_batch_size (model.json) against the server's --max-batch-size, on a real server.

The trainer writes it for the small models (their 128-row batch costs about a call's fixed cost); the
server splits and merges that model's executions by it, while models without the key keep the flag's.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from conftest import ServerProcess, copy_model, launch_server

from classify_client import Client
from classify_client.wire.proto.classify.v1 import classify_pb2 as pb
from classify_client.wire.proto.classify.v1 import classify_pb2_grpc as pb_grpc
from classify_train.recipes import SMALL_MODEL_BATCH


def set_max_batch_size(model_dir: Path, value: object) -> None:
    """Give every version of the copied model this model.json max_batch_size (None: no such key)."""
    for meta_path in model_dir.glob("*/model.json"):
        document = json.loads(meta_path.read_text())
        document.pop("max_batch_size", None)
        if value is not None:
            document["max_batch_size"] = value
        meta_path.write_text(json.dumps(document))


@pytest.fixture(scope="module")
def served(quick_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The quick softmax four times: its model.json asking for 4 rows, for 16 (above the largest
    preferred size), without the key, and broken."""
    repository = tmp_path_factory.mktemp("batch-size-models")
    set_max_batch_size(copy_model(quick_repository, "mnist-softmax", repository, "four-rows"), 4)
    set_max_batch_size(copy_model(quick_repository, "mnist-softmax", repository, "sixteen-rows"), 16)
    set_max_batch_size(copy_model(quick_repository, "mnist-softmax", repository, "server-default"), None)
    set_max_batch_size(copy_model(quick_repository, "mnist-softmax", repository, "broken"), "lots")
    started = launch_server(
        repository,
        tmp_path_factory.mktemp("batch-size-logs"),
        "--max-batch-size",
        "8",
        "--preferred-batch-sizes",
        "1,2,4,8",
    )
    try:
        started.wait_ready(service="classify.v1.Classifier")
        yield started
    finally:
        started.terminate()


def executions_by_size(target: str, model: str) -> dict[int, int]:
    with grpc.insecure_channel(target) as channel:
        (stats,) = (
            pb_grpc.ClassifierStub(channel)
            .GetModelStatistics(pb.GetModelStatisticsRequest(model=model), timeout=10)
            .models
        )
    return {count.batch_size: count.executions for count in stats.batch_sizes}


def test_the_trainer_asks_for_larger_batches_of_the_small_models_only(quick_repository: Path) -> None:
    asked = {
        name: json.loads(next((quick_repository / name).glob("*/model.json")).read_text()).get(
            "max_batch_size"
        )
        for name in ("mnist-softmax", "mnist-mlp", "mnist-cnn", "imdb-lstm")
    }
    assert asked == {
        "mnist-softmax": SMALL_MODEL_BATCH,
        "mnist-mlp": SMALL_MODEL_BATCH,
        "mnist-cnn": None,
        "imdb-lstm": None,
    }


def test_a_models_own_max_batch_size_splits_its_executions(served: ServerProcess) -> None:
    rows = np.random.default_rng(0).integers(0, 256, size=(10, 28, 28), dtype=np.uint8)
    with Client(served.target) as client:
        own = client.classify("four-rows", images=rows)
        default = client.classify("server-default", images=rows)
    assert own.labels == default.labels and len(own) == 10
    assert executions_by_size(served.target, "four-rows") == {4: 2, 2: 1}
    assert executions_by_size(served.target, "server-default") == {8: 1, 2: 1}


def test_the_largest_preferred_size_caps_a_models_own_batches(served: ServerProcess) -> None:
    # Unpadded 10-row executions would be a shape outside the preferred ones (a new XLA compile each).
    rows = np.random.default_rng(1).integers(0, 256, size=(10, 28, 28), dtype=np.uint8)
    with Client(served.target) as client:
        answers = client.classify("sixteen-rows", images=rows)
    assert len(answers) == 10
    assert executions_by_size(served.target, "sixteen-rows") == {8: 1, 2: 1}


def test_a_bad_max_batch_size_fails_that_model_with_what_was_expected(served: ServerProcess) -> None:
    with grpc.insecure_channel(served.target) as channel:
        models = pb_grpc.ClassifierStub(channel).ListModels(pb.ListModelsRequest(), timeout=10).models
    (broken,) = [model for model in models if model.name == "broken"]
    (version,) = broken.versions
    assert version.state == "failed"
    assert "max_batch_size is 'lots'; expected a positive integer" in version.reason
    assert {model.name for model in models if model.state == "ready"} == {
        "four-rows",
        "sixteen-rows",
        "server-default",
    }
