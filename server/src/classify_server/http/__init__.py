"""HTTP/JSON beside gRPC: KServe V2 REST, TF Serving REST and a native JSON API, on uvicorn in the gRPC
server's event loop, over the same data plane and batcher (docs/protocols.md)."""
