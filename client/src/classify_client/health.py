"""The standard grpc.health.v1 protocol as the client reads it (status names, not enum numbers), and the
bookkeeping of polling it until a server or model is ready."""

from __future__ import annotations

import time

import grpc
from grpc_health.v1 import health_pb2

from .errors import ClassifyError, DeadlineExceededError, ModelNotFoundError

SERVING = "SERVING"
NOT_SERVING = "NOT_SERVING"
SERVICE_UNKNOWN = "SERVICE_UNKNOWN"
UNKNOWN = "UNKNOWN"
# Health service name of the native API as a whole; each model is also a service, under its own name.
CLASSIFIER_SERVICE = "classify.v1.Classifier"


def health_request(service: str) -> health_pb2.HealthCheckRequest:
    return health_pb2.HealthCheckRequest(service=service)


def status_name(response: health_pb2.HealthCheckResponse) -> str:
    return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)


# A single health check inside wait_until_ready never waits longer than this, so a hung server does not
# eat the whole wait in one poll; nor less than the floor, which gRPC needs to answer at all.
HEALTH_POLL_CEILING = 5.0
HEALTH_POLL_FLOOR = 0.05


class ReadinessPoll:
    """The bookkeeping of ``wait_until_ready``: how long each check may take, and when to give up."""

    def __init__(self, target: str, model: str | None, timeout: float, poll_interval: float) -> None:
        self.service = model or ""
        self.interval = poll_interval
        self._target = target
        self._timeout = timeout
        self._deadline = time.monotonic() + timeout

    def check_timeout(self) -> float:
        remaining = self._deadline - time.monotonic()
        return max(min(remaining, HEALTH_POLL_CEILING), HEALTH_POLL_FLOOR)

    @staticmethod
    def describe(error: ClassifyError) -> str:
        """An unreachable server is not ready yet, not a failure: it becomes the last status seen."""
        return f"{error.code.name}: {error.details}"

    def ready(self, status: str) -> bool:
        """True once ``status`` is SERVING; raises DeadlineExceededError when no time is left to poll."""
        if status == SERVING:
            return True
        if time.monotonic() + self.interval > self._deadline:
            raise DeadlineExceededError(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"{self.service or 'server'} at {self._target} not SERVING after {self._timeout:g}s "
                f"(last: {status})",
            )
        return False


def unknown_service_status(error: ClassifyError) -> str:
    """The standard health servicer answers Check on a service it never heard of with NOT_FOUND."""
    if isinstance(error, ModelNotFoundError):
        return SERVICE_UNKNOWN
    raise error
