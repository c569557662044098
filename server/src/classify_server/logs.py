"""Logging set-up: plain lines for people, or one JSON object per line for log pipelines.

Messages are written to read well on their own (the plain format prints only them); structured fields
travel in ``extra=`` and the JSON format emits each as a key of its own, so a pipeline can filter on
``event``, ``model``, ``version``, ``request_id`` or ``code`` without parsing text.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import re
import sys
import threading
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

LogFormat = Literal["plain", "json"]
PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Attributes every LogRecord has; anything else on a record came from ``extra=`` and is a field.
_STANDARD_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None)).keys() | {"message", "asctime"}
)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the record's extra fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRIBUTES and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # default=str: a Path or an enum in a field must never cost the log line.
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(level: str, log_format: LogFormat) -> None:
    """Send every logger (ours, grpc's, TensorFlow's Python side, warnings) to stderr in one format."""
    stream = capture_native_stderr() if log_format == "json" else sys.stderr
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(PLAIN_FORMAT))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.captureWarnings(True)


# absl's prefix on C++ log lines (TensorFlow, gRPC core): severity letter, then the date.
_ABSL_LINE = re.compile(r"^(?P<severity>[IWEF])\d{4} ")
_ABSL_LEVELS = {"I": logging.INFO, "W": logging.WARNING, "E": logging.ERROR, "F": logging.CRITICAL}


def capture_native_stderr() -> TextIO:
    """Route what C++ libraries write straight to file descriptor 2 through Python logging.

    TensorFlow and gRPC core print through absl, outside Python and deaf to TF_CPP_MIN_LOG_LEVEL in
    recent builds, and one plain line breaks a JSON log pipeline. Descriptor 2 becomes a pipe read by a
    thread that re-logs each foreign line under the ``native`` logger; Python's own handler writes to a
    duplicate of the original stderr. Returns that stream."""
    original = os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8", errors="replace")
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    sys.stderr = os.fdopen(2, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
    reader = threading.Thread(target=_relog_native_lines, args=(read_end,), name="native-stderr", daemon=True)
    reader.start()
    atexit.register(_drain_native_stderr, reader)
    return original


def _drain_native_stderr(reader: threading.Thread) -> None:
    """At exit, close the pipe's only write end so the reader sees its end and logs the last lines
    (a start-up error printed just before exit must not be lost)."""
    sys.stderr.flush()
    os.close(2)
    reader.join(timeout=2.0)


def _relog_native_lines(read_end: int) -> None:
    log = logging.getLogger("native")
    with os.fdopen(read_end, encoding="utf-8", errors="replace") as lines:
        for line in lines:
            text = line.rstrip("\n")
            if not text.strip():
                continue
            match = _ABSL_LINE.match(text)
            level = _ABSL_LEVELS[match["severity"]] if match else logging.WARNING
            log.log(level, text, extra={"event": "native_output"})


def lifecycle(event: str, model: str, version: int, **fields: Any) -> dict[str, Any]:
    """The ``extra=`` of a model lifecycle line: loading, ready, failed, unloading, unloaded."""
    return {"event": f"model_{event}", "model": model, "version": version, **fields}
