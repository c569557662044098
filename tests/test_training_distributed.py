"""`classify-train --strategy`: two workers on loopback (MultiWorkerMirroredStrategy over RING collectives,
CPU, TF_CONFIG built here) train the quick softmax against a one-worker run with the same seed and global
batch; the chief's export is served by the real server and both are scored over gRPC. The workers are killed
after the first epoch and resume from the chief's checkpoint. Plus the errors a
user meets before anything trains, and `classify-train tf-config`.

The three training processes run at once: the workers mostly wait on each other's collectives, so the
one-worker run costs little wall time beside them.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import BIN, ServerProcess, copy_model, run_cli

from classify_train.cli import main

MODEL = "mnist-softmax"
SEED = "7"
GLOBAL_BATCH = "200"  # two replicas of the recipe's quick batch (100)
TRAIN_SECONDS = 600


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def start_training(repo: Path, log: Path, strategy: str, data_path: Path, tf_config: dict | None = None):
    env = {**os.environ, "CLASSIFY_DATA_DIR": str(data_path), "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("TF_CONFIG", None)
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    command = [
        str(BIN / "classify-train"), MODEL, "--quick", "--seed", SEED, "--export", str(repo),
        "--strategy", strategy, "--global-batch-size", GLOBAL_BATCH, "--epochs", "2",
    ]  # fmt: skip
    with log.open("w") as stream:
        return subprocess.Popen(command, stdout=stream, stderr=subprocess.STDOUT, env=env)


def start_workers(repo: Path, root: Path, data_path: Path, run: str) -> dict[str, subprocess.Popen]:
    workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
    return {
        f"{run}-worker-{index}": start_training(
            repo, root / f"{run}-worker-{index}.log", "multi-worker", data_path,
            {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}},
        )
        for index in range(2)
    }  # fmt: skip


def wait_for(path_pattern: str, root: Path, processes: dict[str, subprocess.Popen]) -> None:
    deadline = time.monotonic() + TRAIN_SECONDS
    while not list(root.glob(path_pattern)):
        if time.monotonic() > deadline or any(p.poll() is not None for p in processes.values()):
            pytest.fail(
                f"no {path_pattern} under {root} (exit codes {[p.poll() for p in processes.values()]})"
            )
        time.sleep(0.2)


def finish(processes: dict[str, subprocess.Popen], root: Path, clock: float) -> dict[str, float]:
    """Wait for every process; fail with the logs if one fails. Returns wall seconds since ``clock``."""
    codes, walls = {}, {}
    try:
        for name, process in processes.items():
            codes[name] = process.wait(TRAIN_SECONDS)
            walls[name] = round(time.perf_counter() - clock, 1)
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
    if any(codes.values()):
        logs = {name: (root / f"{name}.log").read_text()[-3000:] for name in processes}
        pytest.fail(f"exit codes {codes}\n" + "\n".join(f"--- {n}\n{t}" for n, t in logs.items()))
    return walls


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, data_path: Path) -> dict[str, Path]:
    """Repositories of a two-worker run and of a one-worker (mirrored, one CPU replica) run, two epochs
    each. The two workers are killed once the chief has checkpointed epoch 1, and started again (on new
    ports): they must resume from that checkpoint, as after a lost machine."""
    root = tmp_path_factory.mktemp("distributed")
    two, one = root / "two-workers", root / "one-worker"
    clock = time.perf_counter()
    one_worker = {"one-worker": start_training(one, root / "one-worker.log", "mirrored", data_path)}
    first = start_workers(two, root, data_path, "first")
    wait_for(".checkpoints/*/backup/training_metadata.json", two, first)
    # The epoch's history is written just after its checkpoint; killed in between, the resumed run would
    # rightly skip epoch 1 but have no curve for it, which the history test below would take for a bug.
    wait_for(".checkpoints/*/history.json", two, first)
    for process in first.values():
        process.kill()  # SIGKILL: TensorFlow's multi-worker runtime catches SIGTERM (preemption notices)
        process.wait(60)
    second = start_workers(two, root, data_path, "second")
    walls = finish({**one_worker, **second}, root, clock)
    # Figures for docs/training.md (pytest -s shows them): wall time of each process, from the same start.
    print(f"\ntraining wall times (s, from the first start): {walls}")
    return {"two": two, "one": one, "root": root}


def model_json(repo: Path) -> dict:
    return json.loads((repo / MODEL / "1" / "model.json").read_text())


def test_only_the_chief_publishes_and_the_checkpoints_are_gone(trained: dict[str, Path]) -> None:
    assert sorted(p.name for p in (trained["two"] / MODEL).iterdir()) == ["1"]  # one version, not two
    assert not (trained["two"] / ".checkpoints").exists()
    worker_log = (trained["root"] / "second-worker-1.log").read_text()
    assert f"worker 1/2: {MODEL}: trained (validation accuracy" in worker_log
    assert "the chief exports it" in worker_log
    assert (
        f"{MODEL}: exported {trained['two'] / MODEL / '1'}"
        in (trained["root"] / "second-worker-0.log").read_text()
    )


def test_the_killed_workers_resumed_from_the_chiefs_checkpoint(trained: dict[str, Path]) -> None:
    for index in range(2):
        log = (trained["root"] / f"second-worker-{index}.log").read_text()
        assert f"worker {index}/2: {MODEL}: resuming from the checkpoint after epoch 1/2" in log
        assert f"{MODEL} epoch 1/2 " not in log and f"{MODEL} epoch 2/2 " in log  # only epoch 2 ran
    training = model_json(trained["two"])["training"]
    assert training["resumed_at_epoch"] == 1 and training["epochs"] == 2
    history = json.loads((trained["two"] / MODEL / "1" / "history.json").read_text())
    assert [entry["epoch"] for entry in history] == [1, 2]  # the curves cover both runs


def test_model_json_states_the_strategy_and_the_scaled_batch_and_rate(trained: dict[str, Path]) -> None:
    two, one = model_json(trained["two"])["training"], model_json(trained["one"])["training"]
    assert two["distribution"] == {
        "strategy": "multi-worker",
        "workers": 2,
        "replicas": 2,
        "global_batch_size": 200,
        "per_replica_batch_size": 100,
        "recipe_batch_size": 100,
        "recipe_learning_rate": 0.5,
        "learning_rate_scaling": "linear: recipe rate x global batch / recipe batch",
    }
    assert one["distribution"]["strategy"] == "mirrored" and one["distribution"]["replicas"] == 1
    for training in (two, one):
        assert training["batch_size"] == 200 and training["learning_rate"] == 1.0  # 0.5 x 200 / 100
        assert training["seed"] == int(SEED) and training["train_examples"] == 20000


def test_the_two_worker_export_serves_and_scores_like_one_worker(
    trained: dict[str, Path], validation_files: Path, private_server, tmp_path: Path
) -> None:
    repository = tmp_path / "repository"
    copy_model(trained["two"], MODEL, repository, "two-workers")
    copy_model(trained["one"], MODEL, repository, "one-worker")
    server: ServerProcess = private_server(repository)
    server.wait_serving()
    accuracy = {}
    for name in ("two-workers", "one-worker"):
        summary = tmp_path / f"{name}.json"
        run_cli(
            "classify", "score", "--target", server.target, "--model", name,
            "--input", validation_files / "validation-images-idx3-ubyte.gz",
            "--labels", validation_files / "validation-labels-idx1-ubyte.gz",
            "--output", tmp_path / f"{name}.csv", "--summary-json", summary, timeout=300,
        )  # fmt: skip
        facts = json.loads(summary.read_text())
        assert facts["failed"] == 0 and facts["scored"] == facts["n"] == 1000
        accuracy[name] = facts["accuracy"]
    assert accuracy["two-workers"] > 0.8, accuracy  # learned, not chance
    assert abs(accuracy["two-workers"] - accuracy["one-worker"]) <= 0.005, accuracy
    recorded = [model_json(trained[k])["metrics"]["validation_accuracy"] for k in ("two", "one")]
    seconds = [model_json(trained[k])["training"]["seconds"] for k in ("two", "one")]
    print(f"\nserved accuracy {accuracy}; model.json validation accuracy {recorded}, training s {seconds}")
    assert abs(recorded[0] - recorded[1]) <= 0.005, recorded  # on the whole validation split too


def _invoke(*args: str, env: dict[str, str | None]) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
    return result.exit_code, result.output


NO_CLUSTER: dict[str, str | None] = {
    "TF_CONFIG": None,
    "CLASSIFY_WORKER_HOSTS": None,
    "JOB_COMPLETION_INDEX": None,
    "CLASSIFY_WORKER_INDEX": None,
}


def test_multi_worker_without_a_cluster_says_what_to_set(tmp_path: Path) -> None:
    code, output = _invoke(
        MODEL, "--quick", "--strategy", "multi-worker", "--export", str(tmp_path), env=NO_CLUSTER
    )
    assert code != 0
    assert "--strategy multi-worker needs the cluster" in output and "TF_CONFIG" in output
    assert "CLASSIFY_WORKER_HOSTS" in output and "Traceback" not in output


def test_a_malformed_tf_config_is_refused_with_the_expected_shape(tmp_path: Path) -> None:
    env = {**NO_CLUSTER, "TF_CONFIG": '{"cluster": {}}'}
    code, output = _invoke(MODEL, "--quick", "--strategy", "multi-worker", "--export", str(tmp_path), env=env)
    assert code != 0 and "TF_CONFIG is not a multi-worker configuration" in output
    assert '"task": {"type": "worker", "index": 0}' in output


def test_the_raw_tensorflow_loop_refuses_distributed_strategies(tmp_path: Path) -> None:
    for strategy in ("mirrored", "multi-worker"):
        code, output = _invoke(
            "mnist-cnn-tf", "--strategy", strategy, "--export", str(tmp_path), env=NO_CLUSTER
        )
        assert code == 2, output
        assert "low-level TensorFlow loop, which runs on one device" in output
        assert "--strategy one or auto" in output


def test_tf_config_is_built_from_the_worker_hosts_and_the_job_index() -> None:
    hosts = "classify-train-0.classify-train:12345,classify-train-1.classify-train:12345"
    code, output = _invoke(
        "tf-config", env={**NO_CLUSTER, "CLASSIFY_WORKER_HOSTS": hosts, "JOB_COMPLETION_INDEX": "1"}
    )
    assert code == 0, output
    assert json.loads(output) == {
        "cluster": {"worker": hosts.split(",")},
        "task": {"type": "worker", "index": 1},
    }
    code, output = _invoke(
        "tf-config", env={**NO_CLUSTER, "CLASSIFY_WORKER_HOSTS": hosts, "JOB_COMPLETION_INDEX": "2"}
    )
    assert code != 0 and "worker index '2' is not one of 0..1" in output
    code, output = _invoke("tf-config", env={**NO_CLUSTER, "CLASSIFY_WORKER_HOSTS": "no-port"})
    assert code != 0 and "is not host:port" in output
    code, output = _invoke("tf-config", env={**NO_CLUSTER, "CLASSIFY_WORKER_HOSTS": hosts})
    assert code != 0 and "JOB_COMPLETION_INDEX" in output


def test_global_batch_must_split_evenly_over_the_replicas() -> None:
    from classify_train.distribute import Distribution
    from classify_train.errors import DistributionError
    from classify_train.recipes import get_recipe

    two = Distribution("multi-worker", None, replicas=2, workers=2, task_index=0, is_chief=True)
    schedule = get_recipe(MODEL).quick
    assert two.scale(schedule).batch_size == 200 and two.scale(schedule).learning_rate == 1.0
    uneven = Distribution("multi-worker", None, 2, 2, 0, True, global_batch_size=101)
    with pytest.raises(DistributionError, match="does not split evenly over 2 replicas"):
        uneven.scale(schedule)
