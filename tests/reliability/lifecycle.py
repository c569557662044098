"""Model-lifecycle faults under load, at scale: a new version swapped in, a corrupt version published,
then SIGTERM, while a closed loop of many callers keeps calls in flight throughout.

The operations tests (tests/test_model_lifecycle.py, tests/test_server_startup_shutdown.py) check each fault with a
few callers; this runs them in a row under the harness's load. A call sent well before the signal must
be answered OK: the swap and the broken version are invisible to callers. Around and after the signal a
call is answered, or refused with UNAVAILABLE because the server is draining and then gone.

The callers do what the client library's retry policy does with a call that gRPC, stopping, ended with
a bare CANCELLED before the server ever saw it (grpc/grpc#41785): they send it again, and count it.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from load import Outcomes, Sender
from servers import Server

from classify_client.retry import UNSTARTED_AT_SHUTDOWN_DETAILS
from classify_client.wire.proto.classify.v1 import classify_pb2

# Calls sent this long before SIGTERM have surely reached the server, so they count as accepted.
ACCEPTED_MARGIN_SECONDS = 1.0
DRAINING_OUTCOMES = frozenset({"OK", "UNAVAILABLE"})


@dataclass
class LifecycleResult:
    callers: int
    accepted: Outcomes = field(default_factory=Outcomes)  # sent well before SIGTERM
    around_signal: Outcomes = field(default_factory=Outcomes)  # sent within the margin or after
    swapped_to: int = 0
    swap_seconds: float = 0.0  # new version published -> the only one served
    corrupt_reported: bool = False
    served_after_corrupt: list[int] = field(default_factory=list)
    in_progress_at_signal: int | None = None
    exit_code: int | None = None
    resent: int = 0  # calls gRPC ended unstarted at shutdown, sent again (module doc)

    @property
    def failures(self) -> int:
        unexpected = sum(
            self.around_signal.count(code)
            for code in self.around_signal.latencies_ms
            if code not in DRAINING_OUTCOMES
        )
        lifecycle = (
            (not self.corrupt_reported)
            + (self.served_after_corrupt != [self.swapped_to])
            + (self.exit_code != 0)
        )
        return self.accepted.errors + unexpected + lifecycle


def publish(model_dir: Path, source: Path, version: int) -> Path:
    """Copy a version in the way exports do: written aside, then renamed into place in one step (the
    operations tests in tests/test_model_lifecycle.py publish through this too)."""
    staging = model_dir / f".staging-{version}"
    shutil.copytree(source, staging)
    return Path(shutil.move(staging, model_dir / str(version)))


class Models:
    """ListModels over the harness's own channel: which versions of one model are in which state."""

    def __init__(self, target: str, model: str) -> None:
        self._channel = grpc.aio.insecure_channel(target)
        self._list = self._channel.unary_unary(
            "/classify.v1.Classifier/ListModels",
            request_serializer=classify_pb2.ListModelsRequest.SerializeToString,
            response_deserializer=classify_pb2.ListModelsResponse.FromString,
        )
        self.model = model

    async def states(self) -> dict[int, str]:
        reply = await self._list(classify_pb2.ListModelsRequest(), timeout=10)
        (summary,) = [m for m in reply.models if m.name == self.model]
        return {v.version: v.state for v in summary.versions}

    async def wait_until(
        self, wanted: str, check: Callable[[dict[int, str]], bool], timeout: float = 180.0
    ) -> float:
        """Seconds until ``check`` holds for the versions' states; raises naming ``wanted`` if never."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if check(await self.states()):
                return time.monotonic() - started
            await asyncio.sleep(0.1)
        raise RuntimeError(f"{self.model}: not {wanted} after {timeout:.0f} s: {await self.states()}")

    async def close(self) -> None:
        await self._channel.close()


async def lifecycle(server: Server, model: str, callers: int, settle_seconds: float) -> LifecycleResult:
    """``server`` watches its repository (a short --poll-seconds) and serves ``model`` alone."""
    assert server.process is not None
    model_dir = server.repository / model
    newest = max(int(p.name) for p in model_dir.iterdir() if p.name.isdigit())
    result = LifecycleResult(callers)
    sender = Sender(server.target, model, "image", 8)
    models = Models(server.target, model)
    signalled_at: float | None = None
    stop = asyncio.Event()

    async def caller(offset: int) -> None:
        i = offset
        while not stop.is_set():
            sent = time.monotonic()
            while True:
                bucket = Outcomes()
                await sender.one(
                    sender.payloads[i % len(sender.payloads)], 30, time.perf_counter_ns(), bucket
                )
                if bucket.details.get("CANCELLED") != UNSTARTED_AT_SHUTDOWN_DETAILS:
                    break
                result.resent += 1
            # Known only now: whether the signal came, and so whether this call was surely accepted.
            accepted = signalled_at is None or sent < signalled_at - ACCEPTED_MARGIN_SECONDS
            target = result.accepted if accepted else result.around_signal
            for code, latencies in bucket.latencies_ms.items():
                for latency in latencies:
                    target.add(code, latency, bucket.details.get(code, ""))
            if "UNAVAILABLE" in bucket.latencies_ms:
                await asyncio.sleep(0.05)  # the server is going away: do not spin
            i += callers

    tasks = [asyncio.create_task(caller(k)) for k in range(callers)]
    try:
        await asyncio.sleep(settle_seconds)
        swapped = result.swapped_to = newest + 1
        publish(model_dir, model_dir / str(newest), swapped)
        result.swap_seconds = await models.wait_until(
            f"serving only v{swapped}", lambda states: states == {swapped: "ready"}
        )
        await asyncio.sleep(settle_seconds)
        broken = publish(model_dir, model_dir / str(swapped), swapped + 1)
        (broken / "saved_model.pb").write_bytes(b"not a SavedModel")
        await models.wait_until(f"reporting v{swapped + 1} failed", lambda s: s.get(swapped + 1) == "failed")
        result.corrupt_reported = True
        await asyncio.sleep(settle_seconds)
        states = await models.states()
        result.served_after_corrupt = sorted(v for v, state in states.items() if state == "ready")
        signalled_at = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        result.exit_code = await asyncio.to_thread(server.process.wait, 120)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await models.close()
        await sender.close()
    found = re.search(r"shutting down: (\d+) requests in progress", server.log())
    result.in_progress_at_signal = int(found.group(1)) if found else None
    return result
