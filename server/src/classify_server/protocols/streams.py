"""Bidirectional streams of every protocol: answer requests concurrently, reply in arrival order."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

Request = TypeVar("Request")
Reply = TypeVar("Reply")


async def ordered_answers(
    requests: AsyncIterator[Request], answer: Callable[[Request], Awaitable[Reply]], window: int
) -> AsyncIterator[Reply]:
    """Yield ``answer(request)`` for each request, in arrival order, with up to ``window`` in progress.

    Concurrency lets a stream's requests batch with each other and with other callers; the window bounds
    what one stream can hold. ``answer`` must turn its own failures into replies (the stream goes on).
    """
    in_flight: asyncio.Queue[asyncio.Task[Reply] | None] = asyncio.Queue(maxsize=window)

    async def read_requests() -> None:
        try:
            async for request in requests:
                await in_flight.put(asyncio.create_task(answer(request)))
        finally:
            await in_flight.put(None)

    reader = asyncio.create_task(read_requests())
    try:
        while (task := await in_flight.get()) is not None:
            yield await task
        await reader  # surfaces a broken request stream
    finally:
        reader.cancel()
        while not in_flight.empty():
            leftover = in_flight.get_nowait()
            if leftover is not None:
                leftover.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
