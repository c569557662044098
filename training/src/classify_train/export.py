"""Writes a trained model into ``REPO/NAME/VERSION/`` as a TF SavedModel plus model.json.

The contract with the server: one signature ``serving_default`` taking ``images`` (uint8 [None, 28, 28])
or ``texts`` (string [None]) and returning ``probabilities`` (float32 [None, classes]); all preprocessing
is inside the graph. Beside it, one ``explain_<method>`` signature per explanation method
(explain_signatures.py). A version appears by one atomic rename of a finished directory, so a server scanning
the repository never sees a half-written version.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from classify_train.errors import ExportError
from classify_train.explain_signatures import ExplainEndpoint, explain_endpoints
from classify_train.metadata import OUTPUT_NAME, SIGNATURE
from classify_train.repository import STAGING_PREFIX, publish
from classify_train.training import TrainedModel

TOLERANCE = 1e-5


def export_model(
    trained: TrainedModel,
    repo: Path,
    name: str,
    document_for: Callable[[int], dict[str, Any]],
    sample: np.ndarray | list[str],
    *,
    methods: list[str] | None = None,
    add_files: Callable[[Path], None] | None = None,
) -> Path:
    """Export, verify against ``sample`` inputs, and publish as the next version; returns its directory.

    ``document_for(version)`` builds model.json once the version number is known; ``add_files(staging)``
    writes extra files (report, logs) into the version before it is published; ``methods`` are the
    explanation methods to add as signatures (explain_methods.methods_for; None: none).
    """
    model_dir = repo / name
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=model_dir))
    # mkdtemp makes it private (0700); a server running as another user must be able to read the version.
    staging.chmod(0o755)
    try:
        endpoints = explain_endpoints(trained, methods or [])
        write_saved_model(trained, staging, endpoints)
        verify_saved_model(trained, staging, sample)
        verify_explain_signatures(staging, endpoints, sample)
        if add_files is not None:
            add_files(staging)
        return publish(staging, model_dir, document_for)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already when published


def is_keras(trained: TrainedModel) -> bool:
    """False for the raw-TensorFlow models, which are ``tf.Module``s (models/mnist_tf.py)."""
    return isinstance(trained.model, keras.Model)


def write_saved_model(trained: TrainedModel, directory: Path, endpoints: list[ExplainEndpoint]) -> None:
    if not is_keras(trained):
        _write_module(trained, directory, endpoints)
        return
    archive = keras.export.ExportArchive()
    archive.track(trained.model)
    if trained.encoder is not None:
        # The vocabulary is a lookup table: it must be tracked to be saved with the graph.
        archive.track(trained.encoder.vectorizer)
    input_spec = serving_input_spec(trained)
    archive.add_endpoint(name=SIGNATURE, fn=serving_function(trained), input_signature=[input_spec])
    for endpoint in endpoints:
        archive.add_endpoint(
            name=endpoint.name, fn=endpoint.function, input_signature=endpoint.input_signature
        )
    archive.write_out(str(directory), verbose=False)


def _write_module(trained: TrainedModel, directory: Path, endpoints: list[ExplainEndpoint]) -> None:
    """A ``tf.Module`` saved with the same signatures an ExportArchive writes for a Keras model."""
    module = trained.model
    serve = tf.function(serving_function(trained), input_signature=[serving_input_spec(trained)])
    signatures = {SIGNATURE: serve.get_concrete_function()}
    for endpoint in endpoints:
        explain = tf.function(endpoint.function, input_signature=endpoint.input_signature)
        signatures[endpoint.name] = explain.get_concrete_function()
    tf.saved_model.save(module, str(directory), signatures=signatures)


def serving_input_spec(trained: TrainedModel) -> tf.TensorSpec:
    if trained.encoder is not None:
        return tf.TensorSpec(shape=[None], dtype=tf.string, name="texts")
    return tf.TensorSpec(shape=[None, 28, 28], dtype=tf.uint8, name="images")


def serving_function(trained: TrainedModel) -> Callable[[tf.Tensor], dict[str, tf.Tensor]]:
    model, encoder = trained.model, trained.encoder
    if encoder is not None:

        def serve_texts(texts: tf.Tensor) -> dict[str, tf.Tensor]:
            return {OUTPUT_NAME: model(encoder(texts), training=False)}

        return serve_texts

    def serve_images(images: tf.Tensor) -> dict[str, tf.Tensor]:
        # The model's first layer (or step, for a tf.Module) casts uint8 to float32 and scales by 1/255.
        return {OUTPUT_NAME: model(images, training=False)}

    return serve_images


def keras_probabilities(trained: TrainedModel, inputs: np.ndarray | list[str]) -> np.ndarray:
    """What the in-memory model predicts, the reference the exported graph must match."""
    if not is_keras(trained):
        return np.asarray(trained.model(tf.constant(inputs), training=False))
    if trained.encoder is not None:
        inputs = np.asarray(trained.encoder(tf.constant(inputs)))
    return np.asarray(trained.model.predict(inputs, verbose=0))


def verify_saved_model(trained: TrainedModel, directory: Path, sample: np.ndarray | list[str]) -> None:
    """Reload the SavedModel as a server would and check names, dtypes, shapes and predictions."""
    signature = tf.saved_model.load(str(directory)).signatures[SIGNATURE]
    spec = serving_input_spec(trained)
    inputs = signature.structured_input_signature[1]
    if list(inputs) != [spec.name] or not spec.is_compatible_with(inputs[spec.name]):
        raise ExportError(f"signature inputs are {inputs}, expected only {spec}")
    outputs = signature.structured_outputs
    if list(outputs) != [OUTPUT_NAME] or outputs[OUTPUT_NAME].dtype != tf.float32:
        raise ExportError(f"signature outputs are {outputs}, expected one float32 output {OUTPUT_NAME!r}")
    exported = signature(**{spec.name: tf.constant(sample, dtype=spec.dtype)})[OUTPUT_NAME].numpy()
    expected = keras_probabilities(trained, sample)
    if exported.shape != expected.shape or not np.allclose(exported, expected, rtol=0, atol=TOLERANCE):
        difference = np.max(np.abs(exported - expected)) if exported.shape == expected.shape else "shape"
        raise ExportError(f"exported predictions differ from the Keras model's (max difference {difference})")


# Items and steps the explain signatures are checked with at export: enough to run every code path.
_EXPLAIN_CHECK_ROWS = 4
_EXPLAIN_CHECK_STEPS = 4


def verify_explain_signatures(
    directory: Path, endpoints: list[ExplainEndpoint], sample: np.ndarray | list[str]
) -> None:
    """Every explain signature reloads, and its probabilities are the served ones (same model inside)."""
    loaded = tf.saved_model.load(str(directory))
    served = loaded.signatures[SIGNATURE]
    rows = sample[:_EXPLAIN_CHECK_ROWS]
    for endpoint in endpoints:
        if endpoint.name not in loaded.signatures:
            raise ExportError(f"signature {endpoint.name!r} is missing from the export")
        spec = endpoint.input_signature[0]
        inputs = {spec.name: tf.constant(rows, dtype=spec.dtype), "targets": tf.fill([len(rows)], -1)}
        if any(s.name == "steps" for s in endpoint.input_signature):
            inputs["steps"] = tf.constant(_EXPLAIN_CHECK_STEPS)
        answer = loaded.signatures[endpoint.name](**inputs)
        expected = served(**{spec.name: inputs[spec.name]})[OUTPUT_NAME].numpy()
        if not np.allclose(answer["probabilities"].numpy(), expected, rtol=0, atol=TOLERANCE):
            raise ExportError(f"{endpoint.name}: its probabilities differ from serving_default's")
