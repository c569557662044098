"""Classify model server: gRPC servicers over a data plane with per-model dynamic batching."""

__version__ = "0.1.0"
