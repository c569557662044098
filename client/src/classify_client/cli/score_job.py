"""``classify score`` as a function of paths: check everything that can be checked, then score.

The order matters: every whole-job mistake (output extension, input format, labels file, server, model,
input kind) is found before the first row is scored or the output file is created.
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..client import Client
from ..errors import ClassifyError, describe_for_target
from ..formats import FormatError
from ..retry import RetryPolicy
from ..settings import DEFAULT_RETRY, DEFAULT_TARGET
from ..types import ModelMetadata
from .inputs import (
    TEXT,
    InputRow,
    InputSource,
    MissingDependencyError,
    TableColumns,
    import_parquet,
    open_input,
)
from .labels import LabelMap, check_labels, read_labels, resolve_labels
from .outputs import check_id_columns, open_writer, output_format
from .progress import StderrReporter
from .report import ScoreSummary
from .resume import Resumed, resume_output
from .scoring import Backend, ClientBackend, Scorer


class JobError(Exception):
    """The job cannot run or cannot go on; the message is one line saying why."""


@dataclass(frozen=True)
class ScoreOptions:
    model: str
    input: Path
    output: Path
    target: str = DEFAULT_TARGET
    labels: Path | None = None
    summary_json: Path | None = None
    top_k: int = 1
    limit: int | None = None
    batch_size: int = 256
    in_flight: int = 4
    timeout: float | None = 30.0
    headers: Mapping[str, str] = field(default_factory=dict)
    # TLS credentials (classify_client.settings.tls_credentials); None connects in plaintext.
    credentials: Any = None
    # "native" (classify.v1) or "v2" (KServe V2 ModelInfer; labels still come from native metadata).
    protocol: str = "native"
    # UNAVAILABLE is retried per this policy within --timeout (a restarting server); None: never.
    retry: RetryPolicy | None = DEFAULT_RETRY
    # Carry on from the complete rows of an existing output instead of starting it afresh.
    resume: bool = False
    # Column names of table inputs (CSV, Parquet) and the --id-column columns carried into the output.
    columns: TableColumns = field(default_factory=TableColumns)


def run_score(options: ScoreOptions, reporter: StderrReporter | None = None) -> ScoreSummary:
    """Score ``options.input`` into ``options.output``; raise JobError for whole-job problems.

    Bad rows do not raise: they are written with their error and counted in the summary's ``failed``.
    """
    try:
        if output_format(options.output) == "parquet":
            import_parquet()  # a missing extra is found before the job starts, not after scoring
        check_id_columns(options.columns.ids)
        source = open_input(options.input, options.columns)
        external = read_labels(options.labels) if options.labels else None
    except (ValueError, MissingDependencyError) as exc:  # FormatError is a ValueError
        raise JobError(str(exc)) from None
    check_label_count(source, external, options.labels)
    # The first call does not retry: a wrong address or a stopped server is a whole-job mistake to report
    # now, not after --timeout. Once the job runs, calls retry (a server restarting mid-job).
    with _client(options, retry=None) as probe:
        metadata = fetch_metadata(probe, options)
    with _client(options, retry=options.retry) as client:
        check_input_kind(source, metadata, options)
        label_map = LabelMap(metadata.labels)
        if external is not None:
            try:
                check_labels(external, label_map, options.labels or "")
            except FormatError as exc:
                raise JobError(str(exc)) from None
        rows = resolve_labels(limited(source.rows(), options.limit), label_map, external)
        total = source.count if options.limit is None else min(source.count or options.limit, options.limit)
        resumed = resume(options, metadata.labels)
        if resumed is not None:
            if total is not None and resumed.rows > total:
                raise JobError(
                    f"{options.output} holds {resumed.rows} rows but the input has {total}: "
                    "not an output of this input (drop --resume to start afresh)"
                )
            print(f"resuming after {resumed.rows} rows already in {options.output}", file=sys.stderr)
            rows = itertools.islice(rows, resumed.rows, None)
        backend = make_backend(client, metadata, options)
        try:
            summary = score_rows(
                rows, backend, metadata, options, reporter or StderrReporter(total), resumed=resumed
            )
        finally:
            if hasattr(backend, "close"):
                backend.close()
    if external is not None and options.limit is None and summary.n != len(external):
        # Text inputs have no length up front, so the labels file could not be checked before scoring.
        print(f"warning: {len(external)} labels for {summary.n} input rows", file=sys.stderr)
    if options.summary_json is not None:
        write_summary_json(options.summary_json, summary)
    return summary


def _client(options: ScoreOptions, *, retry: RetryPolicy | None) -> Client:
    return Client(
        options.target,
        timeout=options.timeout,
        headers=options.headers,
        credentials=options.credentials,
        retry=retry,
    )


def make_backend(client: Client, metadata: ModelMetadata, options: ScoreOptions) -> Backend:
    if options.protocol != "v2":
        return ClientBackend(
            client, options.model, version=metadata.version, top_k=options.top_k, timeout=options.timeout
        )
    from .v2_protocol import V2Backend  # only here: it defines the inference.* protobuf messages

    try:
        return V2Backend(
            options.target,
            options.model,
            version=metadata.version,
            labels=list(metadata.labels),
            top_k=options.top_k,
            timeout=options.timeout,
            headers=options.headers,
            credentials=options.credentials,
            retry=options.retry,
        )
    except ClassifyError as exc:
        raise JobError(describe_for_target(exc, options.target)) from None


def score_rows(
    rows: Iterator[InputRow],
    backend: Backend,
    metadata: ModelMetadata,
    options: ScoreOptions,
    reporter: StderrReporter,
    *,
    resumed: Resumed | None = None,
) -> ScoreSummary:
    start = time.perf_counter()
    try:
        append = resumed is not None
        with open_writer(options.output, append=append, id_columns=options.columns.ids) as writer, reporter:
            if resumed is not None:
                reporter.advance(resumed.rows)
            scorer = Scorer(
                backend,
                writer,
                reporter,
                labels=metadata.labels,
                batch_size=options.batch_size,
                in_flight=options.in_flight,
                tally=resumed.tally if resumed is not None else None,
            )
            tally = scorer.run(rows)
    except ClassifyError as exc:
        raise JobError(describe_for_target(exc, options.target)) from None
    except MissingDependencyError as exc:
        raise JobError(str(exc)) from None
    except OSError as exc:
        raise JobError(f"{options.output}: cannot write output: {exc.strerror or exc}") from None
    return ScoreSummary(
        model=metadata.name or options.model,
        version=metadata.version,
        n=tally.n,
        scored=tally.scored,
        failed=tally.failed,
        labelled=tally.labelled,
        correct=tally.correct,
        seconds=time.perf_counter() - start,
        labels=metadata.labels,
        confusion=tally.confusion,
    )


def resume(options: ScoreOptions, labels: list[str]) -> Resumed | None:
    if not options.resume:
        return None
    try:
        return resume_output(options.output, labels, options.columns.ids)
    except (ValueError, MissingDependencyError) as exc:
        raise JobError(str(exc)) from None


def check_label_count(source: InputSource, external: list[Any] | None, path: Path | None) -> None:
    # Only checkable when the input's length is known up front (IDX, .npy, folders); a mismatch almost
    # always means the wrong labels file, and scoring with it would report a meaningless accuracy.
    if external is not None and source.count is not None and len(external) != source.count:
        raise JobError(f"{path}: {len(external)} labels for {source.count} input rows in {source.path}")


def fetch_metadata(client: Client, options: ScoreOptions) -> ModelMetadata:
    try:
        return client.metadata(options.model)
    except ClassifyError as exc:
        raise JobError(describe_for_target(exc, options.target)) from None


def check_input_kind(source: InputSource, metadata: ModelMetadata, options: ScoreOptions) -> None:
    kind = metadata.input.kind or ("text" if "text" in metadata.task else "image")
    if kind != source.kind:
        held = "texts" if source.kind == TEXT else "images"
        raise JobError(f"model {options.model} takes {kind} input but {source.path} holds {held}")


def limited(rows: Iterator[InputRow], limit: int | None) -> Iterator[InputRow]:
    return rows if limit is None else itertools.islice(rows, limit)


def write_summary_json(path: Path, summary: ScoreSummary) -> None:
    try:
        path.write_text(json.dumps(summary.as_json(), indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise JobError(f"{path}: cannot write summary: {exc.strerror or exc}") from None
