"""The three wire protocols served on one port: native Classify, KServe V2 and TF Serving.

Each servicer turns its protocol's messages into the data plane's calls and back; none of them knows
about batching or TensorFlow.
"""
