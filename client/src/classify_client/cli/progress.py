"""What ``classify score`` tells the person watching: a progress bar and bad rows, both on stderr.

The bar is drawn only when stderr is a terminal, so pipes and CI logs get plain lines and no escape codes.
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import IO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

# Enough to show what goes wrong; a file of thousands of bad rows must not bury everything else.
MAX_ROW_MESSAGES = 20


class StderrReporter:
    """Progress and bad-row messages for one scoring job; use as a context manager."""

    def __init__(
        self,
        total: int | None,
        *,
        stream: IO[str] | None = None,
        show_bar: bool | None = None,
        max_messages: int = MAX_ROW_MESSAGES,
    ) -> None:
        self._stream = stream or sys.stderr
        self._total = total
        self._show_bar = self._stream.isatty() if show_bar is None else show_bar
        self._max_messages = max_messages
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self.failed = 0

    def __enter__(self) -> StderrReporter:
        if self._show_bar:
            self._progress = Progress(
                TextColumn("scoring"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=Console(file=self._stream),
            )
            self._progress.start()
            self._task = self._progress.add_task("scoring", total=self._total, rate="")
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
        hidden = self.failed - self._max_messages
        if hidden > 0:
            self._print(f"... and {hidden} more bad rows; see the error column of the output")

    def row_failed(self, index: int, source: str, error: str) -> None:
        self.failed += 1
        if self.failed <= self._max_messages:
            self._print(f"row {index} ({source}): {error}")

    def advance(self, rows: int) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, rows)
            task = self._progress.tasks[0]
            speed = task.speed
            self._progress.update(self._task, rate=f"{speed:,.0f} rows/s" if speed else "")

    def _print(self, message: str) -> None:
        if self._progress is not None:
            # Through the live console, so the line lands above the bar instead of through it.
            self._progress.console.print(message, markup=False, highlight=False, soft_wrap=True)
        else:
            self._stream.write(message + "\n")
            self._stream.flush()
