"""What ``classify explain`` writes into its output folder, row by row in input order.

Images: ``images/NNNNN.png`` (one per input row that was explained), ``contact-sheet.png`` (the first
64), ``attributions.npy`` ((N, 28, 28) float32, one map per input row, of its first explained class;
NaN for a row that failed, so row i is always input row i), with --top-k K > 1 also
``attributions-top-k.npy`` ((N, K, 28, 28)), and ``items.jsonl`` (per row: the explained classes,
their probabilities and completeness gaps, the PNG's name, or the error).
Reviews: ``reviews.html`` (every token highlighted) and ``attributions.jsonl`` (per row: id, label,
probability, tokens and raw scores, every explained class, or the error).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from ..explanations import Attribution
from ..types import ModelMetadata
from .explain_pages import ReviewItem, reviews_page
from .explain_pictures import SHEET_ITEMS, Painter, Panel, save_png
from .inputs import InputRow

IMAGES_FOLDER = "images"
CONTACT_SHEET = "contact-sheet.png"
MAPS = "attributions.npy"
TOP_K_MAPS = "attributions-top-k.npy"
IMAGE_ITEMS = "items.jsonl"
REVIEWS_PAGE = "reviews.html"
REVIEW_ITEMS = "attributions.jsonl"


@dataclass(frozen=True)
class RowOutcome:
    """One input row and its explained classes (best first), or why it has none."""

    row: InputRow
    targets: list[Attribution] | None = None
    error: str | None = None


def target_record(attribution: Attribution) -> dict[str, Any]:
    return {
        "index": attribution.target_index,
        "label": attribution.target_label,
        "probability": round(attribution.probability, 6),
        "logit": round(attribution.logit, 6),
        "baseline_logit": round(attribution.baseline_logit, 6),
        "completeness_gap": round(attribution.completeness_gap, 6),
    }


def row_id(row: InputRow) -> Any:
    """The row's --id-column value when one was named, else its position in the input."""
    return row.ids[0] if row.ids else row.index


class _Writer:
    """What both writers share: the counts and completeness gaps behind the summary line."""

    def __init__(self, folder: Path, items_name: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.count = 0
        self.failed = 0
        self.gaps: list[float] = []
        self.relative_gaps: list[float] = []
        self.method = ""  # the method the server used, named under each picture
        self._items: IO[str] = (folder / items_name).open("w", encoding="utf-8")

    def _tally(self, outcome: RowOutcome) -> None:
        self.count += 1
        if outcome.targets is None:
            self.failed += 1
            return
        first = outcome.targets[0]
        self.gaps.append(abs(first.completeness_gap))
        if first.logit != first.baseline_logit:
            self.relative_gaps.append(first.relative_gap)

    def _line(self, record: dict[str, Any]) -> None:
        # default=str: an id value JSON has no type for (a date, bytes) is written as its text.
        self._items.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")


class ImageWriter(_Writer):
    def __init__(self, folder: Path, metadata: ModelMetadata) -> None:
        self._painter = Painter()  # first: a missing Pillow is reported before anything is written
        super().__init__(folder, IMAGE_ITEMS)
        (folder / IMAGES_FOLDER).mkdir(exist_ok=True)
        self._maps: list[np.ndarray] = []  # (K, 28, 28) per row
        self._sheet: list[Panel] = []

    def write(self, outcome: RowOutcome) -> None:
        self._tally(outcome)
        row = outcome.row
        record: dict[str, Any] = {"index": row.index, "id": row_id(row), "source": row.source}
        if outcome.targets is None:
            self._maps.append(np.full((1, 28, 28), np.nan, np.float32))
            self._line({**record, "png": None, "targets": [], "error": outcome.error})
            return
        panels = [
            Panel(row.image, a.map, a.target_label, a.probability)
            for a in outcome.targets
            if a.map is not None
        ]
        self._maps.append(np.stack([panel.map for panel in panels]).astype(np.float32))
        if len(self._sheet) < SHEET_ITEMS:
            self._sheet.append(panels[0])
        name = f"{IMAGES_FOLDER}/{row.index:05d}.png"
        save_png(self._painter.picture(panels, self.method), self.folder / name)
        targets = [target_record(a) for a in outcome.targets]
        self._line({**record, "png": name, "targets": targets, "error": None})

    def finish(self, heading: str) -> None:
        self._items.close()
        width = max((len(maps) for maps in self._maps), default=1)
        padded = [
            np.concatenate([maps, np.full((width - len(maps), 28, 28), np.nan, np.float32)])
            for maps in self._maps
        ]
        stacked = np.stack(padded) if padded else np.zeros((0, width, 28, 28), np.float32)
        np.save(self.folder / MAPS, np.ascontiguousarray(stacked[:, 0]))
        if width > 1:
            np.save(self.folder / TOP_K_MAPS, stacked)
        if self._sheet:
            save_png(self._painter.contact_sheet(self._sheet, heading), self.folder / CONTACT_SHEET)


class ReviewWriter(_Writer):
    def __init__(self, folder: Path) -> None:
        super().__init__(folder, REVIEW_ITEMS)
        self._page: list[ReviewItem] = []

    def write(self, outcome: RowOutcome) -> None:
        self._tally(outcome)
        row = outcome.row
        record: dict[str, Any] = {"index": row.index, "id": row_id(row), "source": row.source}
        if outcome.targets is None:
            self._page.append(ReviewItem(row.index, row_id(row), row.source, row.text, error=outcome.error))
            self._line({**record, "label": None, "probability": None, "tokens": [], "scores": [],
                        "targets": [], "error": outcome.error})  # fmt: skip
            return
        first = outcome.targets[0]
        tokens = first.tokens or []
        scores = first.scores if first.scores is not None else np.zeros(0, np.float32)
        self._page.append(
            ReviewItem(row.index, row_id(row), row.source, row.text, first.target_label, first.probability,
                       first.completeness_gap, tokens, scores)
        )  # fmt: skip
        targets = [
            {**target_record(a), "scores": [] if a.scores is None else [float(s) for s in a.scores]}
            for a in outcome.targets
        ]
        self._line(
            {
                **record,
                "label": first.target_label,
                "probability": round(first.probability, 6),
                "tokens": tokens,
                "scores": [float(s) for s in scores],
                "targets": targets,
                "error": None,
            }
        )

    def finish(self, heading: str) -> None:
        self._items.close()
        (self.folder / REVIEWS_PAGE).write_text(reviews_page(self._page, heading), encoding="utf-8")
