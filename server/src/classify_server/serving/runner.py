"""Runs one exported SavedModel: load, check the signature against model.json, call it on a batch.

TensorFlow is imported here and only here, lazily, so the rest of the server (and its tests) start fast.
Calls happen in worker threads; a SavedModel signature is a graph function that releases the GIL while
its kernels run, so the event loop keeps serving gRPC meanwhile.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from classify_server.serving.explain_runner import ExplainRunner
from classify_server.serving.repository import ModelSpec, ModelSpecError

log = logging.getLogger(__name__)

_TF_DTYPES = {"uint8": "uint8", "string": "string"}
# Batch sizes run once at load, so the first real requests do not pay for graph and kernel set-up.
WARMUP_BATCH_SIZES = (1, 8, 32)


def configure_tensorflow(intra_op_threads: int, inter_op_threads: int) -> None:
    """Thread pools must be set before TensorFlow runs its first op."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(intra_op_threads)
    tf.config.threading.set_inter_op_parallelism_threads(inter_op_threads)
    # GPU memory (growth or a cap) is devices.py's job, before this; a second setting here would clash.
    log.info(
        "TensorFlow %s, %d intra-op / %d inter-op threads (0: TensorFlow's choice)",
        tf.__version__,
        intra_op_threads,
        inter_op_threads,
    )


class SavedModelRunner:
    """One loaded version: ``runner(batch) -> probabilities`` (float32, rows × classes)."""

    def __init__(self, spec: ModelSpec) -> None:
        import tensorflow as tf

        self.spec = spec
        self._tf = tf
        started = time.perf_counter()
        try:
            self._loaded = tf.saved_model.load(str(spec.path))
        except Exception as exc:  # TensorFlow raises many types for a broken export
            raise ModelSpecError(f"{spec.path}: cannot load SavedModel: {exc}") from exc
        signatures = self._loaded.signatures
        if spec.signature not in signatures:
            raise ModelSpecError(
                f"{spec.path}: no signature {spec.signature!r}; it has {sorted(signatures.keys())}"
            )
        self._function = signatures[spec.signature]
        self._check_signature()
        # The explain_* signatures beside it (none in a version exported before they existed).
        self.explainer = ExplainRunner(signatures, spec.input.name)
        self.load_seconds = time.perf_counter() - started

    def _check_signature(self) -> None:
        spec = self.spec
        inputs = self._function.structured_input_signature[1]
        outputs = self._function.structured_outputs
        if set(inputs) != {spec.input.name}:
            raise ModelSpecError(
                f"{spec.path}: signature inputs {sorted(inputs)} do not match "
                f"model.json input {spec.input.name!r}"
            )
        declared = inputs[spec.input.name].dtype.name
        if declared != _TF_DTYPES[spec.input.dtype]:
            raise ModelSpecError(
                f"{spec.path}: signature takes {declared}, model.json says {spec.input.dtype}"
            )
        if spec.output_name not in outputs:
            raise ModelSpecError(
                f"{spec.path}: signature outputs {sorted(outputs)} lack "
                f"model.json output {spec.output_name!r}"
            )

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        tensor = self._tf.constant(batch)
        result = self._function(**{self.spec.input.name: tensor})[self.spec.output_name]
        probabilities = np.asarray(result.numpy(), dtype=np.float32)
        if probabilities.shape != (len(batch), len(self.spec.labels)):
            raise RuntimeError(
                f"{self.spec.name} v{self.spec.version} returned shape {probabilities.shape} for "
                f"{len(batch)} rows and {len(self.spec.labels)} labels"
            )
        return probabilities

    def warmup(self) -> float:
        """Run representative batches once; returns the seconds it took."""
        started = time.perf_counter()
        for size in WARMUP_BATCH_SIZES:
            self(example_batch(self.spec, size))
        return time.perf_counter() - started


def example_batch(spec: ModelSpec, rows: int) -> np.ndarray:
    """A well-formed batch for warmup: blank images, or a short neutral sentence."""
    if spec.input.kind == "image":
        return np.zeros((rows, *spec.input.shape[1:]), dtype=np.uint8)
    return np.array(["a warmup sentence for the text model"] * rows, dtype=object)
