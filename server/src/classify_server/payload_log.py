"""Payload logging: a sample of requests and their answers, written off the request path.

``--payload-log PATH`` appends JSON lines to a file; ``--payload-log URL`` (http:// or https://) POSTs each
entry as a CloudEvent (structured mode, ``application/cloudevents+json``). The request path only decides
whether to sample (one random draw), and for a sampled request builds a small record and puts it in a
bounded queue without waiting: when the queue is full the entry is dropped and counted, so a slow or
stuck sink costs requests nothing. One writer thread turns records into JSON and writes them.
"""

from __future__ import annotations

import base64
import json
import logging
import queue
import random
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from classify_server.request_ids import current_call
from classify_server.serving.validation import ImagePayload, Payload, TextPayload

if TYPE_CHECKING:  # the data plane imports this module; these only type the record's fields
    from classify_server.serving.data_plane import Classification, ClassifyCall
    from classify_server.serving.repository import ModelSpec

log = logging.getLogger(__name__)

EVENT_TYPE = "io.classify.payload.v1"
EVENT_SOURCE = "classify-server"
HTTP_TIMEOUT_SECONDS = 5.0
TEXT_SUMMARY_CHARS = 80  # a summarised text keeps its start, enough to recognise it
InputDetail = Literal["summary", "full"]


@dataclass(frozen=True)
class PayloadRecord:
    """What the request path hands over: references only; the writer thread formats them."""

    request_id: str
    time: float  # time.time() when answered
    model: str
    version: int | None
    protocol: str
    code: str
    seconds: float
    payload: Payload | None
    labels: tuple[str, ...]
    top_indices: list[list[int]] | None
    top_scores: list[list[float]] | None


@dataclass
class PayloadLogStats:
    written: int = 0
    dropped: int = 0  # the buffer was full: the sink is slower than the sampled traffic
    failed: int = 0  # the sink refused or failed the write


class PayloadLog:
    def __init__(self, target: str, sample: float, buffer_entries: int, inputs: InputDetail) -> None:
        self.target = target
        self.sample = sample
        self.inputs = inputs
        self.stats = PayloadLogStats()
        self._queue: queue.Queue[PayloadRecord | None] = queue.Queue(maxsize=buffer_entries)
        self._sink = HttpSink(target) if is_url(target) else FileSink(target)
        self._thread = threading.Thread(target=self._write_all, name="payload-log", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def offer(
        self,
        call: ClassifyCall,
        spec: ModelSpec | None,
        code: str,
        seconds: float,
        result: Classification | None,
    ) -> None:
        """Queue an entry for a sampled request; never waits, drops (and counts) when the buffer is full."""
        if random.random() >= self.sample:
            return
        record = PayloadRecord(
            request_id=current_call.get()[0],
            time=time.time(),
            model=spec.name if spec else call.model,
            version=spec.version if spec else call.version,
            protocol=call.protocol,
            code=code,
            seconds=seconds,
            payload=call.payload,
            labels=spec.labels if spec else (),
            top_indices=result.top_indices.tolist() if result is not None else None,
            top_scores=result.top_scores.tolist() if result is not None else None,
        )
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self.stats.dropped += 1

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued (for up to ``timeout`` seconds), then stop the writer."""
        if not self._thread.is_alive():
            return
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            log.warning("payload log: sink too slow to flush at shutdown; queued entries are lost")
            return
        self._thread.join(timeout)

    def _write_all(self) -> None:
        while True:
            record = self._queue.get()
            if record is None:
                break
            batch = [record]
            while len(batch) < 256:  # whatever else is waiting goes in one write
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._write([entry(r, self.inputs) for r in batch])
                    self._sink.close()
                    return
                batch.append(more)
            self._write([entry(r, self.inputs) for r in batch])
        self._sink.close()

    def _write(self, entries: list[dict[str, Any]]) -> None:
        try:
            written = self._sink.write(entries)
        except Exception as exc:  # a sink failure must never end the writer: count and go on
            log.warning("payload log: writing %d entries to %s failed: %s", len(entries), self.target, exc)
            self.stats.failed += len(entries)
            return
        self.stats.written += written
        self.stats.failed += len(entries) - written


def is_url(target: str) -> bool:
    return target.startswith(("http://", "https://"))


def entry(record: PayloadRecord, inputs: InputDetail) -> dict[str, Any]:
    """One log entry: model, version, request id, inputs (summary or full), outputs, latency."""
    outputs = None
    if record.top_indices is not None and record.top_scores is not None:
        outputs = [
            [{"index": i, "label": record.labels[i], "score": s} for i, s in zip(row, scores, strict=True)]
            for row, scores in zip(record.top_indices, record.top_scores, strict=True)
        ]
    return {
        "id": record.request_id,
        "time": datetime.fromtimestamp(record.time, UTC).isoformat(timespec="milliseconds"),
        "model": record.model,
        "version": record.version,
        "protocol": record.protocol,
        "code": record.code,
        "latency_ms": round(record.seconds * 1000, 3),
        "inputs": describe_inputs(record.payload, inputs),
        "outputs": outputs,
    }


def describe_inputs(payload: Payload | None, inputs: InputDetail) -> dict[str, Any] | None:
    if isinstance(payload, ImagePayload):
        described: dict[str, Any] = {
            "kind": "image",
            "shape": list(payload.shape),
            "bytes": len(payload.data),
        }
        if inputs == "full":
            described["uint8_base64"] = base64.b64encode(payload.data).decode("ascii")
        return described
    if isinstance(payload, TextPayload):
        texts = list(payload.texts)
        if inputs == "summary":
            texts = [text[:TEXT_SUMMARY_CHARS] for text in texts]
        return {"kind": "text", "rows": len(payload.texts), "texts": texts}
    return None


class FileSink:
    """JSON lines appended to a file, flushed after each batch so a reader sees whole lines."""

    def __init__(self, path: str) -> None:
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 (open for the server's life)

    def write(self, entries: list[dict[str, Any]]) -> int:
        self._file.write("".join(json.dumps(e, separators=(",", ":")) + "\n" for e in entries))
        self._file.flush()
        return len(entries)

    def close(self) -> None:
        self._file.close()


class HttpSink:
    """Each entry POSTed as a structured-mode CloudEvent; a non-2xx answer counts as failed."""

    def __init__(self, url: str) -> None:
        import httpx  # only servers that log to a URL pay for the import

        self._url = url
        self._client = httpx.Client(timeout=HTTP_TIMEOUT_SECONDS)
        self._errors = httpx.HTTPError

    def write(self, entries: list[dict[str, Any]]) -> int:
        written = 0
        for data in entries:
            event = {
                "specversion": "1.0",
                "type": EVENT_TYPE,
                "source": EVENT_SOURCE,
                "id": data["id"] or f"{data['time']}-{written}",
                "time": data["time"],
                "datacontenttype": "application/json",
                "data": data,
            }
            try:
                answer = self._client.post(
                    self._url,
                    content=json.dumps(event, separators=(",", ":")),
                    headers={"content-type": "application/cloudevents+json"},
                )
            except self._errors as exc:  # counted as failed by the caller; the next entry tries again
                log.warning("payload log: POST to %s failed: %s", self._url, exc)
                continue
            written += answer.is_success
        return written

    def close(self) -> None:
        self._client.close()
