"""The standard grpc.health.v1 protocol as the client reads it: status names, not enum numbers."""

from __future__ import annotations

from grpc_health.v1 import health_pb2

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
