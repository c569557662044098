"""``classify explain`` as a function of paths: check what can be checked, then explain chunk by chunk.

Whole-job mistakes (input format, server, model, input kind, a method or target the model does not
have, a missing extra) raise JobError before the first call is made or any file is written. Rows are
sent in chunks of ``batch_size`` items, one Explain call each, the next chunk in flight while the last
one is drawn; a chunk the server refuses (INVALID_INPUT: one over-long review) is retried item by item,
so one bad row costs itself, not its 63 neighbours.
"""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..client import Client
from ..errors import ClassifyError, InvalidInputError, describe_for_target
from ..explanations import Attribution, ExplainResult
from ..retry import RetryPolicy
from ..settings import DEFAULT_RETRY, DEFAULT_TARGET
from ..types import ModelMetadata
from .explain_writers import ImageWriter, ReviewWriter, RowOutcome
from .inputs import IMAGE, InputRow, MissingDependencyError, TableColumns, open_input
from .progress import MAX_ROW_MESSAGES
from .score_job import JobError


@dataclass(frozen=True)
class ExplainOptions:
    model: str
    input: Path
    output: Path  # a folder
    target: str = DEFAULT_TARGET
    version: int | None = None
    method: str = "auto"
    steps: int = 0
    target_label: str | None = None
    target_index: int | None = None
    top_k: int = 1
    batch_size: int = 64
    limit: int | None = None
    timeout: float | None = 120.0
    headers: Mapping[str, str] = field(default_factory=dict)
    credentials: Any = None
    retry: RetryPolicy | None = DEFAULT_RETRY
    columns: TableColumns = field(default_factory=TableColumns)


@dataclass(frozen=True)
class ExplainSummary:
    model: str
    version: int
    kind: str  # IMAGE or TEXT
    method: str
    steps: int
    items: int
    failed: int
    gaps: np.ndarray  # |completeness gap| of every explained item's first target
    relative_gaps: np.ndarray  # the same over |logit - baseline logit|, where that is not 0
    output: Path
    seconds: float

    def line(self) -> str:
        what = "images" if self.kind == IMAGE else "reviews"
        method = self.method + (f" ({self.steps} steps)" if self.steps else "")
        gap = "n/a"
        if self.gaps.size:
            gap = f"{self.gaps.mean():.4g}"
            if self.relative_gaps.size:
                gap += f" ({100 * self.relative_gaps.mean():.2f}% of |logit - baseline logit|)"
        failed = f", {self.failed} failed" if self.failed else ""
        return (
            f"explained {self.items - self.failed} of {self.items} {what}{failed} with {self.model} "
            f"v{self.version} by {method} in {self.seconds:.1f} s: mean completeness gap {gap}; "
            f"wrote {self.output}"
        )


def run_explain(options: ExplainOptions) -> ExplainSummary:
    try:
        source = open_input(options.input, options.columns)
    except (ValueError, MissingDependencyError) as exc:  # FormatError is a ValueError
        raise JobError(str(exc)) from None
    # The metadata call does not retry: a wrong address is reported now, not after --timeout.
    with _client(options, retry=None) as probe:
        try:
            metadata = probe.metadata(options.model, options.version)
        except ClassifyError as exc:
            raise JobError(describe_for_target(exc, options.target)) from None
    check_job(source.kind, source.path, metadata, options)
    try:
        writer: ImageWriter | ReviewWriter = (
            ImageWriter(options.output, metadata) if source.kind == IMAGE else ReviewWriter(options.output)
        )
    except MissingDependencyError as exc:
        raise JobError(str(exc)) from None
    except OSError as exc:
        raise JobError(f"{options.output}: cannot write the output folder: {exc.strerror or exc}") from None
    start = time.perf_counter()
    rows = source.rows() if options.limit is None else itertools.islice(source.rows(), options.limit)
    with _client(options, retry=options.retry) as client:
        explainer = ChunkExplainer(client, options, metadata.version)
        try:
            for outcomes in explainer.run(rows):
                writer.method = explainer.method
                for outcome in outcomes:
                    writer.write(outcome)
                    if outcome.error is not None:
                        report_row(outcome, writer.failed)
            if writer.failed > MAX_ROW_MESSAGES:
                print(f"... and {writer.failed - MAX_ROW_MESSAGES} more bad rows", file=sys.stderr)
            writer.finish(explainer.heading(metadata))
        except ClassifyError as exc:
            raise JobError(describe_for_target(exc, options.target)) from None
        except OSError as exc:
            raise JobError(f"{options.output}: cannot write: {exc.strerror or exc}") from None
    return ExplainSummary(
        model=metadata.name or options.model,
        version=metadata.version,
        kind=source.kind,
        method=explainer.method,
        steps=explainer.steps,
        items=writer.count,
        failed=writer.failed,
        gaps=np.asarray(writer.gaps, np.float64),
        relative_gaps=np.asarray(writer.relative_gaps, np.float64),
        output=options.output,
        seconds=time.perf_counter() - start,
    )


def _client(options: ExplainOptions, *, retry: RetryPolicy | None) -> Client:
    return Client(
        options.target,
        timeout=options.timeout,
        headers=options.headers,
        credentials=options.credentials,
        retry=retry,
    )


def check_job(kind: str, path: Path, metadata: ModelMetadata, options: ExplainOptions) -> None:
    """The mistakes the model's metadata shows: wrong kind of input, a label, index or method it lacks."""
    model_kind = metadata.input.kind or ("text" if "text" in metadata.task else "image")
    if model_kind != kind:
        held = "images" if kind == IMAGE else "texts"
        raise JobError(f"model {options.model} takes {model_kind} input but {path} holds {held}")
    labels = list(metadata.labels)
    if options.target_label is not None and options.target_label not in labels:
        raise JobError(f"model {options.model} has no label {options.target_label!r}; its labels: "
                       f"{', '.join(labels)}")  # fmt: skip
    if options.target_index is not None and not 0 <= options.target_index < len(labels):
        raise JobError(
            f"--target-index {options.target_index} is out of range: model {options.model} has "
            f"{len(labels)} labels (0 to {len(labels) - 1})"
        )
    # model.json lists the methods the version was exported with; a version without the list is left
    # to the server, whose answer (FAILED_PRECONDITION and the command that adds them) is clearer.
    methods = list((metadata.model_json.get("explain") or {}).get("methods") or {})
    if options.method != "auto" and methods and options.method not in methods:
        raise JobError(
            f"model {options.model} v{metadata.version} explains with {', '.join(methods)}, "
            f"not {options.method}"
        )


def report_row(outcome: RowOutcome, failed: int) -> None:
    if failed <= MAX_ROW_MESSAGES:
        print(f"row {outcome.row.index} ({outcome.row.source}): {outcome.error}", file=sys.stderr)


class ChunkExplainer:
    """Explain calls for chunks of rows, one chunk ahead of the caller, pinned to one version."""

    def __init__(self, client: Client, options: ExplainOptions, version: int) -> None:
        self._client = client
        self._options = options
        self._version = version
        self.method = options.method
        self.steps = options.steps
        self._first = True

    def heading(self, metadata: ModelMetadata) -> str:
        steps = f", {self.steps} steps" if self.steps else ""
        return f"{metadata.name or self._options.model} v{self._version}: {self.method}{steps}"

    def run(self, rows: Iterator[InputRow]) -> Iterator[list[RowOutcome]]:
        chunks = iter(lambda: list(itertools.islice(rows, self._options.batch_size)), [])
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="explain") as pool:
            pending: tuple[list[InputRow], Future[list[RowOutcome]]] | None = None
            for chunk in chunks:
                submitted = (chunk, pool.submit(self.explain_chunk, chunk))
                if pending is not None:
                    yield pending[1].result()
                pending = submitted
            if pending is not None:
                yield pending[1].result()

    def explain_chunk(self, chunk: list[InputRow]) -> list[RowOutcome]:
        usable = [row for row in chunk if row.error is None]
        answers: dict[int, list[Attribution] | str] = {}
        if usable:
            try:
                result = self._call(usable)
                answers = dict(zip((row.index for row in usable), result.items, strict=True))
            except InvalidInputError as whole:
                answers = self._one_by_one(usable, whole)
        self._first = False
        outcomes = []
        for row in chunk:
            answer = answers.get(row.index, row.error or "not explained")
            if isinstance(answer, str):
                outcomes.append(RowOutcome(row, error=answer))
            else:
                outcomes.append(RowOutcome(row, targets=answer))
        return outcomes

    def _one_by_one(
        self, rows: list[InputRow], whole: InvalidInputError
    ) -> dict[int, list[Attribution] | str]:
        """The refused chunk's rows alone; if every one is refused the same way, the job is at fault."""
        answers: dict[int, list[Attribution] | str] = {}
        for row in rows:
            try:
                answers[row.index] = self._call([row]).items[0]
            except InvalidInputError as exc:
                answers[row.index] = exc.details
        refusals = set(answers.values()) if all(isinstance(a, str) for a in answers.values()) else set()
        if self._first and len(refusals) == 1:
            raise JobError(describe_for_target(whole, self._options.target))
        return answers

    def _call(self, rows: list[InputRow]) -> ExplainResult:
        options = self._options
        target: str | int | None = options.target_label
        if options.target_index is not None:
            target = options.target_index
        images = texts = None
        if rows[0].image is not None:
            images = np.stack([row.image for row in rows])
        else:
            texts = [row.text or "" for row in rows]
        result = self._client.explain(
            options.model,
            images=images,
            texts=texts,
            version=self._version,
            target=target,
            top_k=options.top_k,
            method=options.method,
            steps=options.steps,
        )
        self.method, self.steps = result.method, result.steps
        return result
