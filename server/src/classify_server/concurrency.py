"""The server-wide cap on requests in progress (``--max-concurrent-requests``)."""

from __future__ import annotations


class ConcurrencyLimit:
    """Counts calls in progress and refuses those beyond ``limit`` (0: unlimited).

    Used only from the event loop, so a plain integer is enough: no lock on the request path.
    """

    def __init__(self, limit: int) -> None:
        if limit < 0:
            raise ValueError(f"the concurrency limit must be 0 (unlimited) or positive, not {limit}")
        self.limit = limit
        self.in_progress = 0

    def try_enter(self) -> bool:
        if self.limit and self.in_progress >= self.limit:
            return False
        self.in_progress += 1
        return True

    def leave(self) -> None:
        self.in_progress -= 1

    def refusal(self) -> str:
        return (
            f"server busy: {self.in_progress} requests in progress, the limit set by "
            "--max-concurrent-requests; retry with backoff or spread load over more replicas"
        )
