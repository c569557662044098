"""TensorBoard event files for the raw-TensorFlow runs, written with TensorFlow's own ``tf.summary.write``
(``tf.summary.scalar``/``histogram`` are TensorBoard's, and training does not need that package; only
whoever views the logs does): per-epoch scalars, histograms of every variable, and the traced graph of one
training step (``tf.summary.trace_on(graph=True)``), as the course's TensorBoard chapter shows them."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import tensorflow as tf

_HISTOGRAM_BUCKETS = 30


def _metadata(plugin: str) -> Any:
    from tensorflow.core.framework import summary_pb2

    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = plugin  # how each TensorBoard dashboard finds its summaries
    return metadata


def histogram_buckets(values: tf.Tensor, buckets: int = _HISTOGRAM_BUCKETS) -> tf.Tensor:
    """(buckets, 3) float64 rows of (left edge, right edge, count): TensorBoard's histogram format."""
    values = tf.reshape(tf.cast(values, tf.float64), [-1])
    low, high = tf.reduce_min(values), tf.reduce_max(values)
    # A constant tensor (a zero-initialised bias) still needs a bucket of non-zero width.
    high = tf.where(high > low, high, low + 1.0)
    counts = tf.histogram_fixed_width(values, tf.stack([low, high]), nbins=buckets)
    edges = tf.linspace(low, high, buckets + 1)
    return tf.stack([edges[:-1], edges[1:], tf.cast(counts, tf.float64)], axis=1)


class RunSummaries:
    """One writer per folder under ``log_dir`` (``train/``, ``validation/``), like the Keras runs' logs."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self._writers: dict[str, Any] = {}
        self._scalars, self._histograms = _metadata("scalars"), _metadata("histograms")

    def _writer(self, name: str) -> Any:
        if name not in self._writers:
            self._writers[name] = tf.summary.create_file_writer(str(self.log_dir / name))
        return self._writers[name]

    def scalars(self, folder: str, values: dict[str, float], step: int) -> None:
        with self._writer(folder).as_default():
            for tag, value in values.items():
                tf.summary.write(tag, tf.constant(value, tf.float32), step=step, metadata=self._scalars)

    def histograms(self, variables: Iterable[tf.Variable], step: int) -> None:
        with self._writer("train").as_default():
            for variable in variables:
                tag = variable.name.split(":")[0]
                tf.summary.write(tag, histogram_buckets(variable), step=step, metadata=self._histograms)

    def trace_graph(self, run_once: Callable[[], Any], name: str) -> Any:
        """Run ``run_once`` (the first call of a ``tf.function``) with graph tracing on, and write the
        graph it built into ``train/``."""
        tf.summary.trace_on(graph=True, profiler=False)
        result = run_once()
        with self._writer("train").as_default():
            tf.summary.trace_export(name=name, step=0)
        return result

    def flush(self) -> None:
        for writer in self._writers.values():
            writer.flush()

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
