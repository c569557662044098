"""Version labels and the canary split on a real server: every protocol takes a label, the split is sticky
and near its share, and moving a label under load fails no call.

Version 1 of mnist-softmax is the quick softmax model, version 2 the quick MLP (same classes, other
answers), so a wrong version shows in the probabilities too.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from conftest import ServerProcess, launch_server, run_cli
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
from tritonclient.grpc import service_pb2 as v2
from tritonclient.grpc import service_pb2_grpc as v2_grpc

from classify_client import ClassifyError, Client, ModelNotFoundError

MODEL = "mnist-softmax"
DIGIT = np.random.default_rng(3).integers(0, 256, size=(1, 28, 28), dtype=np.uint8)
LABELS = {MODEL: {"stable": 1, "canary": 2}}


def two_version_repository(quick_repository: Path, root: Path) -> Path:
    repository = root / "labelled"
    shutil.copytree(quick_repository / "mnist-softmax" / "1", repository / MODEL / "1")
    shutil.copytree(quick_repository / "mnist-mlp" / "1", repository / MODEL / "2")
    return repository


@pytest.fixture(scope="module")
def labelled_server(
    quick_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("labels")
    started = launch_server(
        two_version_repository(quick_repository, root),
        root,
        "--metrics-port=0",
        "--poll-seconds=0",
        "--version-policy=latest:2",
        f"--model-version-labels={json.dumps(LABELS)}",
        f"--model-canary-split={json.dumps({MODEL: '10%'})}",
    )
    try:
        started.wait_serving()
        yield started
    finally:
        started.terminate()


def test_unversioned_calls_split_near_the_canary_share_and_stick_to_their_key(labelled_server) -> None:
    calls = 2000
    with Client(labelled_server.target, timeout=30) as client:
        futures = [
            client.classify_future(MODEL, images=DIGIT, headers={"x-request-id": f"split-{i}"})
            for i in range(calls)
        ]
        versions = Counter(future.result().version for future in futures)
        repeated = {
            client.classify(MODEL, images=DIGIT, headers={"x-request-id": "split-7"}).version
            for _ in range(20)
        }
        keyed = {
            client.classify(
                MODEL, images=DIGIT, headers={"x-classify-route-key": "user-42", "x-request-id": f"k{i}"}
            ).version
            for i in range(20)
        }
    assert set(versions) == {1, 2}
    assert 0.07 * calls <= versions[2] <= 0.13 * calls, versions
    assert len(repeated) == 1 and len(keyed) == 1  # sticky: one key, one version
    metrics = httpx.get(labelled_server.metrics_url(), timeout=10).text
    served = {
        version: float(count)
        for version, count in re.findall(
            rf'classify_requests_total\{{code="OK",method="Classify",model="{MODEL}",protocol="native",'
            rf'version="(\d)"\}} (\S+)',
            metrics,
        )
    }
    assert served["2"] >= versions[2] and served["1"] >= versions[1]  # the split shows by version
    assert f'classify_version_label{{label="canary",model="{MODEL}"}} 2.0' in metrics


def test_every_protocol_takes_a_label_where_it_takes_a_version(labelled_server) -> None:
    with Client(labelled_server.target, timeout=30) as client:
        assert client.classify(MODEL, images=DIGIT, version_label="canary").version == 2
        assert client.classify(MODEL, images=DIGIT, version_label="stable").version == 1
        assert {m.name: m.version_labels for m in client.models()}[MODEL] == LABELS[MODEL]
    with grpc.insecure_channel(labelled_server.target) as channel:
        request = predict_pb2.PredictRequest()
        request.model_spec.name, request.model_spec.version_label = MODEL, "canary"
        request.inputs["images"].dtype = 4  # DT_UINT8
        request.inputs["images"].tensor_shape.dim.add(size=1)
        request.inputs["images"].tensor_shape.dim.add(size=28)
        request.inputs["images"].tensor_shape.dim.add(size=28)
        request.inputs["images"].tensor_content = DIGIT.tobytes()
        answer = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)
        assert answer.model_spec.version.value == 2
        infer = v2.ModelInferRequest(model_name=MODEL, model_version="canary")
        infer.inputs.add(name="images", datatype="UINT8", shape=[1, 28, 28])
        infer.raw_input_contents.append(DIGIT.tobytes())
        assert v2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(infer, timeout=30).model_version == "2"
    pixels = DIGIT.tolist()
    with httpx.Client(base_url=labelled_server.http_url(), timeout=30) as http:
        tf_rest = http.post(f"/v1/models/{MODEL}/labels/canary:predict", json={"instances": pixels})
        assert tf_rest.status_code == 200, tf_rest.text
        assert (
            http.get(f"/v1/models/{MODEL}/labels/canary").json()["model_version_status"][0]["version"] == "2"
        )
        tensor = {"name": "images", "shape": [1, 28, 28], "datatype": "UINT8", "data": DIGIT.ravel().tolist()}
        kserve = http.post(f"/v2/models/{MODEL}/versions/canary/infer", json={"inputs": [tensor]})
        assert kserve.json()["model_version"] == "2", kserve.text
        native = http.post(
            f"/api/v1/models/{MODEL}:classify", json={"images": pixels, "version_label": "canary"}
        )
        assert native.json()["version"] == 2, native.text
        unknown = http.post(f"/v2/models/{MODEL}/versions/blue/infer", json={"inputs": [tensor]})
        assert unknown.status_code == 404 and "no version label 'blue'" in unknown.json()["error"]


def test_a_label_can_only_point_at_a_loaded_version(labelled_server) -> None:
    with Client(labelled_server.target, timeout=30) as client:
        with pytest.raises(ClassifyError, match="version 9: it is not loaded") as refused:
            client.set_version_label(MODEL, "canary", 9)
        assert refused.value.code == grpc.StatusCode.FAILED_PRECONDITION
        with pytest.raises(ModelNotFoundError, match="no version label 'blue'"):
            client.classify(MODEL, images=DIGIT, version_label="blue")
        assert client.set_version_label(MODEL, "blue", 1) == {"blue": 1, **LABELS[MODEL]}
        assert client.set_version_label(MODEL, "blue", 0) == LABELS[MODEL]  # 0 removes it
    bad = run_cli("classify", "label", "--target", labelled_server.target, MODEL, "latest", "1", check=False)
    assert bad.returncode == 2 and "version label 'latest' is not valid" in bad.stderr


def test_moving_a_label_under_load_fails_no_call(labelled_server) -> None:
    answers: list[int] = []
    errors: list[str] = []
    stop = threading.Event()

    def load() -> None:
        with Client(labelled_server.target, timeout=30) as client:
            while not stop.is_set():
                try:
                    answers.append(client.classify(MODEL, images=DIGIT, version_label="stable").version)
                except Exception as exc:
                    errors.append(repr(exc))

    threads = [threading.Thread(target=load) for _ in range(8)]
    for thread in threads:
        thread.start()
    try:
        for move in range(10):
            moved = run_cli(
                "classify", "label", "--target", labelled_server.target, MODEL, "stable", str(2 - move % 2)
            )
            assert moved.stdout.strip() == f"{MODEL} labels: canary=2, stable={2 - move % 2}"
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    assert not errors, errors[:3]
    assert set(answers) == {1, 2} and len(answers) > 100
