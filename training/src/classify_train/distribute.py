"""``--strategy``: which ``tf.distribute`` strategy trains a Keras model, and what it changes in a run.

- ``one``: TensorFlow's default strategy, one device (what a run did before strategies existed).
- ``mirrored``: ``MirroredStrategy``, one replica per visible GPU (the CPU when there is none).
- ``multi-worker``: ``MultiWorkerMirroredStrategy`` over the workers listed in ``TF_CONFIG``; every worker
  runs the same command. ``TF_CONFIG`` is taken as it is, or built from ``CLASSIFY_WORKER_HOSTS`` (the
  workers' ``host:port``, comma-separated, the same list on every worker) and this worker's index,
  ``JOB_COMPLETION_INDEX`` (what a Kubernetes Indexed Job sets in each pod) or ``CLASSIFY_WORKER_INDEX``.
- ``auto``: ``multi-worker`` when a cluster of more than one worker is configured, ``mirrored`` with more
  than one GPU, else ``one``.

Scaling rule: each replica takes the recipe's batch, so the global batch is the recipe's batch times the
replicas (or ``--global-batch-size``), and the learning rate is the recipe's times global batch / recipe
batch (the linear scaling rule of Goyal et al., 2017). Both, and the strategy, go into model.json.

TensorFlow is imported only by :func:`start_distribution`: building ``TF_CONFIG`` stays instant.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from classify_train.errors import DistributionError
from classify_train.recipes import Schedule

STRATEGIES = ("auto", "one", "mirrored", "multi-worker")
WORKER_HOSTS_ENV = "CLASSIFY_WORKER_HOSTS"
INDEX_ENVS = ("JOB_COMPLETION_INDEX", "CLASSIFY_WORKER_INDEX")
TF_CONFIG_ENV = "TF_CONFIG"


def tf_config_from_hosts(environ: Mapping[str, str]) -> dict[str, Any] | None:
    """``TF_CONFIG`` built from CLASSIFY_WORKER_HOSTS and the worker index; None when the hosts are unset."""
    hosts_text = environ.get(WORKER_HOSTS_ENV, "").strip()
    if not hosts_text:
        return None
    hosts = [host.strip() for host in hosts_text.split(",") if host.strip()]
    for host in hosts:
        name, _, port = host.rpartition(":")
        if not name or not port.isdigit():
            raise DistributionError(
                f"{WORKER_HOSTS_ENV} entry {host!r} is not host:port; expected e.g. "
                "'trainer-0.trainer:12345,trainer-1.trainer:12345'"
            )
    index_text = next((environ[name] for name in INDEX_ENVS if environ.get(name, "").strip()), None)
    if index_text is None:
        raise DistributionError(
            f"{WORKER_HOSTS_ENV} is set but not this worker's index: set {' or '.join(INDEX_ENVS)} "
            f"to a number from 0 to {len(hosts) - 1}"
        )
    if not index_text.strip().isdigit() or int(index_text) >= len(hosts):
        raise DistributionError(
            f"worker index {index_text!r} is not one of 0..{len(hosts) - 1} ({len(hosts)} hosts in "
            f"{WORKER_HOSTS_ENV})"
        )
    return {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": int(index_text)}}


def cluster_config(environ: Mapping[str, str]) -> dict[str, Any] | None:
    """The multi-worker cluster this process belongs to: TF_CONFIG if set, else one built from the hosts."""
    text = environ.get(TF_CONFIG_ENV, "").strip()
    if not text:
        return tf_config_from_hosts(environ)
    try:
        config = json.loads(text)
        workers = config["cluster"]["worker"]
        task = config["task"]
        if not isinstance(workers, list) or task["type"] not in {"worker", "chief"}:
            raise TypeError
        int(task["index"])
    except (ValueError, KeyError, TypeError) as exc:
        raise DistributionError(
            f"{TF_CONFIG_ENV} is not a multi-worker configuration ({exc!r}); expected JSON like "
            '{"cluster": {"worker": ["host0:port", "host1:port"]}, "task": {"type": "worker", "index": 0}}'
        ) from None
    return config


def cluster_workers(config: Mapping[str, Any] | None) -> int:
    if config is None:
        return 0
    return len(config["cluster"].get("worker", [])) + len(config["cluster"].get("chief", []))


def resolve_mode(requested: str, environ: Mapping[str, str], gpus: int) -> str:
    """The strategy ``--strategy requested`` means here (``auto`` decided)."""
    if requested not in STRATEGIES:
        raise DistributionError(f"unknown strategy {requested!r}; expected one of {', '.join(STRATEGIES)}")
    workers = cluster_workers(cluster_config(environ))
    if requested == "multi-worker" and not workers:
        raise DistributionError(
            f"--strategy multi-worker needs the cluster: set {TF_CONFIG_ENV}, or {WORKER_HOSTS_ENV} and "
            f"{INDEX_ENVS[0]} (docs/training.md#distributed-training)"
        )
    if requested != "auto":
        return requested
    if workers > 1:
        return "multi-worker"
    return "mirrored" if gpus > 1 else "one"


def check_cluster(requested: str, environ: Mapping[str, str]) -> None:
    """Refuse a strategy that cannot start here (no cluster for multi-worker, a malformed TF_CONFIG) before
    anything slow happens: data downloads, TensorFlow's start."""
    resolve_mode(requested, environ, gpus=0)


@dataclass
class Distribution:
    """A started strategy and this process's place in it."""

    mode: str
    strategy: Any  # tf.distribute.Strategy
    replicas: int
    workers: int
    task_index: int
    is_chief: bool
    global_batch_size: int | None = None  # --global-batch-size; None: the recipe's batch per replica

    @property
    def distributed(self) -> bool:
        return self.mode != "one"

    def scope(self) -> Any:
        return self.strategy.scope() if self.distributed else nullcontext()

    def scale(self, schedule: Schedule) -> Schedule:
        """The schedule with the global batch and the linearly scaled learning rate."""
        global_batch = self.global_batch_size or schedule.batch_size * self.replicas
        if global_batch % self.replicas:
            raise DistributionError(
                f"--global-batch-size {global_batch} does not split evenly over {self.replicas} replicas; "
                f"use a multiple of {self.replicas}"
            )
        factor = global_batch / schedule.batch_size
        return replace(schedule, batch_size=global_batch, learning_rate=schedule.learning_rate * factor)

    def describe(self, recipe_schedule: Schedule) -> dict[str, Any]:
        """model.json's ``training.distribution``: how the run was spread and scaled."""
        scaled = self.scale(recipe_schedule)
        return {
            "strategy": self.mode,
            "workers": self.workers,
            "replicas": self.replicas,
            "global_batch_size": scaled.batch_size,
            "per_replica_batch_size": scaled.batch_size // self.replicas,
            "recipe_batch_size": recipe_schedule.batch_size,
            "recipe_learning_rate": recipe_schedule.learning_rate,
            "learning_rate_scaling": "linear: recipe rate x global batch / recipe batch",
        }

    def label(self) -> str:
        """How log lines name this process: empty for a lone worker."""
        return f"worker {self.task_index}/{self.workers}: " if self.workers > 1 else ""

    def wait_for_all_workers(self) -> None:
        """A barrier at the end of a multi-worker run: the chief exports after training while the others
        are done, and a worker that exits first looks like a crashed one to the chief's coordination
        service, which then logs errors and may fail the chief's exit."""
        if self.mode != "multi-worker":
            return
        import tensorflow as tf

        strategy = self.strategy

        @tf.function  # eager collectives work too, but TensorFlow warns about their overhead
        def barrier() -> tf.Tensor:
            return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(tf.ones, ([],)), axis=None)

        barrier()

    @contextmanager
    def worker_files(self, run_dir: Path, *, resume: bool) -> Iterator[Path]:
        """Where this worker keeps its checkpoints, history and logs. The chief uses ``run_dir``; the
        other workers, as the TensorFlow docs advise, a private temporary folder (deleted afterwards),
        started from a copy of the chief's so that every worker resumes from the same epoch: resuming a
        multi-worker run needs ``run_dir`` on storage every worker sees (the Kubernetes volume is)."""
        if self.is_chief:
            yield run_dir
            return
        private = Path(tempfile.mkdtemp(prefix=f"classify-worker-{self.task_index}-"))
        try:
            if resume and run_dir.is_dir():
                shutil.copytree(run_dir, private, dirs_exist_ok=True)
            yield private
        finally:
            shutil.rmtree(private, ignore_errors=True)


ONE = Distribution(mode="one", strategy=None, replicas=1, workers=1, task_index=0, is_chief=True)


def start_distribution(requested: str, *, global_batch_size: int | None = None) -> Distribution:
    """Create the strategy. Multi-worker must come before any other TensorFlow op of the process (its
    collectives are configured at start-up), so this runs first."""
    environ = dict(os.environ)
    check_cluster(requested, environ)
    config = cluster_config(environ)
    if config is not None and TF_CONFIG_ENV not in environ:
        os.environ[TF_CONFIG_ENV] = json.dumps(config)  # what MultiWorkerMirroredStrategy reads
    import tensorflow as tf

    gpus = len(tf.config.list_physical_devices("GPU"))
    mode = resolve_mode(requested, environ, gpus)
    if mode == "one":
        return replace(ONE, global_batch_size=global_batch_size)
    if mode == "mirrored":
        strategy = tf.distribute.MirroredStrategy()
        return Distribution(mode, strategy, strategy.num_replicas_in_sync, 1, 0, True, global_batch_size)
    # RING: collectives over gRPC between the workers, which works on CPU-only hosts (NCCL needs GPUs);
    # AUTO would pick NCCL for GPU workers, so GPUs keep it.
    implementation = (
        tf.distribute.experimental.CommunicationImplementation.AUTO
        if gpus
        else tf.distribute.experimental.CommunicationImplementation.RING
    )
    strategy = tf.distribute.MultiWorkerMirroredStrategy(
        communication_options=tf.distribute.experimental.CommunicationOptions(implementation=implementation)
    )
    from classify_train.keras_multiworker import apply_fixes

    apply_fixes()
    assert config is not None  # resolve_mode refused multi-worker without one
    resolver = strategy.cluster_resolver
    task_type, task_id = resolver.task_type, int(resolver.task_id or 0)
    # Without a "chief" task, worker 0 is the chief (TensorFlow's convention).
    has_chief = "chief" in config["cluster"]
    is_chief = task_type == "chief" or (task_type == "worker" and task_id == 0 and not has_chief)
    return Distribution(
        mode,
        strategy,
        strategy.num_replicas_in_sync,
        cluster_workers(config),
        task_id,
        is_chief,
        global_batch_size,
    )
