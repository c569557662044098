"""``classify score --engine ray``: the scoring job as a Ray Data pipeline.

read (Parquet, CSV or PNG/JPEG files, a folder or a glob) -> map_batches(ClassifyPredictor) -> write
Parquet (a folder of files). Rows keep their input order (Ray's ``preserve_order``), so the output lines
up with the input as the local engine's does. The summary is read back from the written files.
"""

from __future__ import annotations

import glob
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..client import Client
from ..errors import ClassifyError, describe_for_target
from ..retry import RetryPolicy
from ..types import ModelMetadata
from .inputs import IMAGE_SUFFIXES, MissingDependencyError, TableColumns, import_parquet
from .report import ScoreSummary
from .score_job import JobError, write_summary_json
from .scoring import Tally

RAY_MISSING = "--engine ray needs Ray Data: pip install 'classify-client[ray]'"
READERS = {".parquet": "parquet", ".csv": "csv", ".gz": "csv", **dict.fromkeys(IMAGE_SUFFIXES, "images")}
# The predictor actors mostly wait on the network: a quarter CPU each leaves the cores to reading.
ACTOR_CPUS = 0.25


@dataclass(frozen=True)
class RayScoreOptions:
    target: str
    model: str
    input: str  # a folder, a file or a glob
    output: Path  # a folder
    address: str | None = None
    columns: TableColumns = field(default_factory=TableColumns)
    summary_json: Path | None = None
    top_k: int = 1
    batch_size: int = 256
    concurrency: int = 4
    timeout: float | None = 30.0
    headers: Mapping[str, str] = field(default_factory=dict)
    max_attempts: int = 20
    max_backoff: float = 5.0
    limit: int | None = None


def input_files(pattern: str) -> tuple[list[str], str]:
    """The files of a folder, a file or a glob, and the one reader they all need."""
    path = Path(pattern)
    if path.is_dir():
        files = sorted(str(p) for p in path.iterdir() if p.is_file() and not p.name.startswith((".", "_")))
    else:
        files = sorted(glob.glob(pattern))
    if not files:
        raise JobError(f"{pattern}: no input files (expected a folder or glob of Parquet, CSV or PNG/JPEG)")
    kinds = {READERS.get(Path(f).suffix.lower()) for f in files}
    if None in kinds or len(kinds) != 1:
        raise JobError(
            f"{pattern}: the files must all be Parquet (.parquet), CSV (.csv, .csv.gz) or PNG/JPEG; "
            f"found {', '.join(sorted({Path(f).suffix or '(none)' for f in files}))}"
        )
    return files, kinds.pop()


def import_ray() -> Any:
    try:
        import ray
        import ray.data  # the ray[data] part, which plain ray lacks
    except ImportError as exc:
        raise JobError(RAY_MISSING) from exc
    return ray


def read_dataset(ray: Any, files: list[str], reader: str) -> Any:
    if reader == "parquet":
        return ray.data.read_parquet(files)
    if reader == "csv":
        from pyarrow import csv

        # Quoted fields may hold line breaks (reviews do); pyarrow assumes they do not unless told.
        return ray.data.read_csv(files, parse_options=csv.ParseOptions(newlines_in_values=True))
    return ray.data.read_images(files, mode="L", size=(28, 28), include_paths=True)


def check_model(options: RayScoreOptions) -> ModelMetadata:
    """The model's metadata; a wrong address or model is a whole-job error before Ray starts."""
    try:
        with Client(options.target, timeout=options.timeout, headers=options.headers, retry=None) as client:
            return client.metadata(options.model)
    except ClassifyError as exc:
        raise JobError(describe_for_target(exc, options.target)) from None


def run_ray_score(options: RayScoreOptions) -> ScoreSummary:
    ray = import_ray()  # the ray extra brings pyarrow too, so it is the one to name first
    try:
        import_parquet()
    except MissingDependencyError as exc:
        raise JobError(str(exc)) from None
    files, reader = input_files(options.input)
    metadata = check_model(options)
    from ..ray import ClassifyPredictor

    started_here = not ray.is_initialized()
    if started_here:
        join_cluster(ray, options.address)
    try:
        ray.data.DataContext.get_current().execution_options.preserve_order = True
        start = time.perf_counter()
        dataset = read_dataset(ray, files, reader)
        if options.limit is not None:
            dataset = dataset.limit(options.limit)
        keep = list(options.columns.ids) + (["path"] if reader == "images" else [])
        retry = RetryPolicy(
            max_attempts=options.max_attempts,
            initial_backoff=min(0.1, options.max_backoff),
            max_backoff=options.max_backoff,
        )
        scored = dataset.map_batches(
            ClassifyPredictor,
            fn_constructor_kwargs={
                "target": options.target,
                "model": options.model,
                "version": metadata.version,
                "top_k": options.top_k,
                "text_column": options.columns.text,
                "image_column": options.columns.image,
                "pixel_prefix": options.columns.pixel_prefix,
                "label_column": options.columns.label,
                "keep": keep,
                "timeout": options.timeout,
                "retry": retry,
                "headers": dict(options.headers),
            },
            concurrency=options.concurrency,
            batch_size=options.batch_size,
            num_cpus=ACTOR_CPUS,
        )
        try:
            scored.write_parquet(str(options.output))
        except ray.exceptions.RayError as exc:
            raise JobError(failure_of(exc, options.target)) from None
        seconds = time.perf_counter() - start
    finally:
        if started_here:
            ray.shutdown()
    summary = summarize(options, metadata, seconds)
    if options.summary_json is not None:
        write_summary_json(options.summary_json, summary)
    return summary


def join_cluster(ray: Any, address: str | None) -> None:
    """Join the cluster at ``address``, or start a local one; JobError when it cannot be reached."""
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
        raise JobError(f"cannot join {where}: {str(exc).splitlines()[0]}") from None


def failure_of(error: Exception, target: str) -> str:
    """One line on why a Ray job stopped: the server's error when an actor's call failed."""
    seen: BaseException | None = error
    for _ in range(8):  # Ray wraps the actor's exception, Ray Data may wrap it again
        if seen is None:
            break
        if isinstance(seen, ClassifyError):
            return describe_for_target(seen, target)
        seen = getattr(seen, "cause", None) or seen.__cause__
    cause = getattr(error, "cause", None)
    text = str(cause if cause is not None else error).strip().splitlines()
    return f"the Ray job failed: {text[-1] if text else type(error).__name__}"


def summarize(options: RayScoreOptions, metadata: ModelMetadata, seconds: float) -> ScoreSummary:
    """Counts, accuracy and confusion from the Parquet files the job wrote."""
    import pyarrow.dataset as arrow_dataset

    table = arrow_dataset.dataset(str(options.output), format="parquet").to_table()
    names = table.column_names
    predicted = table.column("label").to_pylist()
    truths = table.column("true_label").to_pylist() if "true_label" in names else [None] * len(predicted)
    labels = list(metadata.labels)
    index = {label: i for i, label in enumerate(labels)}
    tally = Tally(num_classes=len(labels))
    for label, truth in zip(predicted, truths, strict=True):
        tally.record(index.get(truth) if truth is not None else None, None if label is None else index[label])
    return ScoreSummary(
        model=metadata.name or options.model,
        version=metadata.version,
        n=tally.n,
        scored=tally.scored,
        failed=tally.failed,
        labelled=tally.labelled,
        correct=tally.correct,
        seconds=seconds,
        labels=labels,
        confusion=tally.confusion,
    )
