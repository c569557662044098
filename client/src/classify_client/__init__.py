"""Client library for the Classify gRPC model service: ``Client``, ``AsyncClient`` and typed results.

Names are resolved lazily so that ``classify --help`` does not pay for importing grpc and numpy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .aio import AsyncClient
    from .client import ClassifyFuture, Client
    from .errors import (
        REQUEST_ID_HEADER,
        ClassifyError,
        DeadlineExceededError,
        InvalidInputError,
        MessageTooLargeError,
        ModelNotFoundError,
        OverloadedError,
        UnauthenticatedError,
        UnavailableError,
    )
    from .explanations import Attribution, ExplainResult
    from .retry import RetryPolicy
    from .settings import tls_credentials
    from .types import (
        ClassifyResult,
        ClassScore,
        InputSpec,
        ModelInfo,
        ModelMetadata,
        Prediction,
        StreamReply,
        StreamRequest,
        VersionStatus,
    )

__version__ = "0.1.0"

_EXPORTS = {
    "Client": "client",
    "ClassifyFuture": "client",
    "AsyncClient": "aio",
    "ClassifyError": "errors",
    "InvalidInputError": "errors",
    "ModelNotFoundError": "errors",
    "OverloadedError": "errors",
    "MessageTooLargeError": "errors",
    "REQUEST_ID_HEADER": "errors",
    "DeadlineExceededError": "errors",
    "UnavailableError": "errors",
    "UnauthenticatedError": "errors",
    "ClassifyResult": "types",
    "ClassScore": "types",
    "Prediction": "types",
    "ModelInfo": "types",
    "ModelMetadata": "types",
    "InputSpec": "types",
    "StreamRequest": "types",
    "StreamReply": "types",
    "VersionStatus": "types",
    "tls_credentials": "settings",
    "RetryPolicy": "retry",
    "Attribution": "explanations",
    "ExplainResult": "explanations",
}

__all__ = [
    "REQUEST_ID_HEADER",
    "AsyncClient",
    "Attribution",
    "ClassScore",
    "ClassifyError",
    "ClassifyFuture",
    "ClassifyResult",
    "Client",
    "DeadlineExceededError",
    "ExplainResult",
    "InputSpec",
    "InvalidInputError",
    "MessageTooLargeError",
    "ModelInfo",
    "ModelMetadata",
    "ModelNotFoundError",
    "OverloadedError",
    "Prediction",
    "RetryPolicy",
    "StreamReply",
    "StreamRequest",
    "UnauthenticatedError",
    "UnavailableError",
    "VersionStatus",
    "tls_credentials",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # resolve once
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
