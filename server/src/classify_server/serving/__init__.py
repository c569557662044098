"""The serving core beneath the protocols: model repository, registry and versions, batcher and runner."""
