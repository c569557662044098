"""The wire format that the server, the client and the training package share.

- ``classify_client.wire.proto``: the protobuf and gRPC modules generated from ``proto/`` by
  ``proto/generate.py`` (``proto.classify.v1`` is the native API, ``proto.inference`` KServe V2,
  ``proto.tensorflow_serving.apis`` TF Serving). Never edited by hand.
- ``classify_client.wire.arrays``: how images travel (packed uint8 ``ImageBatch``) and the one top-k rule
  every protocol answers with.

It lives in the client distribution because the client must work without the server or TensorFlow; the
server depends on the client distribution for exactly this package.
"""
