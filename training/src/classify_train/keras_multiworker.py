"""Two fixes that let Keras 3's ``model.fit`` run under ``MultiWorkerMirroredStrategy``.

Keras 3 (3.15, pinned in constraints.txt) supports ``MirroredStrategy`` but its TensorFlow trainer fails
under ``MultiWorkerMirroredStrategy`` (keras-team/keras#20585, tensorflow/tensorflow#72388, both open):

1. before the first step ``_maybe_symbolic_build`` all-reduces the whole first ``(images, labels)``
   batch across workers only to learn its shapes, and the collective cannot take a tuple
   ("Attempt to convert a value (PerReplica...) to a Tensor");
2. ``reduce_per_replica`` averages each step's scalar metrics across workers with ``axis=0``, which a
   scalar has not ("Invalid reduction dimension 0 for input with 0 dimensions").

The fixes: build from this worker's own first batch (shapes are all it needs, and they are the same on
every worker), and average the metrics with ``axis=None``. Applied only in a multi-worker process, and
refused loudly if Keras changed the code they replace.
"""

from __future__ import annotations

from typing import Any

_MARK = "_classify_multi_worker_fix"


def apply_fixes() -> None:
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer

    cls = trainer.TensorFlowTrainer
    if getattr(cls._maybe_symbolic_build, _MARK, False):
        return  # already applied in this process
    for owner, name in [
        (cls, "_maybe_symbolic_build"),
        (cls, "_symbolic_build"),
        (trainer, "reduce_per_replica"),
        (trainer, "_collective_all_reduce_multi_worker"),
    ]:
        if not hasattr(owner, name):
            raise RuntimeError(
                f"keras {getattr(__import__('keras'), '__version__', '?')} has no {name}: the multi-worker "
                "fixes in classify_train/keras_multiworker.py need revisiting for this Keras"
            )

    def symbolic_build_from_local_batch(self: Any, iterator: Any = None, data_batch: Any = None) -> None:
        if self._distribute_strategy is None:
            return
        strategy = self.distribute_strategy
        if iterator is not None:
            for _, _, batches in iterator:
                data_batch = tree.map_structure(
                    lambda value: strategy.experimental_local_results(value)[0], next(batches)
                )
                break
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    keras_reduce = trainer.reduce_per_replica

    def reduce_across_workers(values: Any, strategy: Any, reduction: str) -> Any:
        if reduction in {"auto", "mean"} and trainer._collective_all_reduce_multi_worker(strategy):
            return tree.map_structure(lambda value: strategy.reduce("MEAN", value, axis=None), values)
        return keras_reduce(values, strategy, reduction)

    setattr(symbolic_build_from_local_batch, _MARK, True)
    cls._maybe_symbolic_build = symbolic_build_from_local_batch
    trainer.reduce_per_replica = reduce_across_workers
