"""Scoring over the KServe V2 / Open Inference Protocol (``classify score --protocol v2``).

Uses this package's own generated stubs (``_proto.inference``), never tritonclient. Imported only when the
V2 protocol is asked for: the generated module defines the ``inference.*`` protobuf messages, which
tritonclient defines too, and one Python process cannot register both (a "duplicate symbol" error).
So a program that imports tritonclient must not import this module, and vice versa.

Each batch is one ModelInfer call (raw UINT8 images or BYTES texts) asking for the FP32 probabilities;
the top classes are picked here exactly as the server picks them for the native API, so both protocols
give identical rows.
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc
import numpy as np

from ..conversions import Inputs, predictions_from_arrays, serialize_texts
from ..errors import error_from_rpc
from ..retry import Deadline, Retrier, RetryingFuture, RetryPolicy
from ..settings import DEFAULT_RETRY, channel_options
from ..types import ClassifyResult
from ..wire.arrays import top_classes
from ..wire.proto.inference import grpc_predict_v2_pb2 as pb
from ..wire.proto.inference import grpc_predict_v2_pb2_grpc as pb_grpc

MODEL_INFER_METHOD = "/inference.GRPCInferenceService/ModelInfer"


def infer_request(model: str, version: int | None, inputs: Inputs, *, input_name: str, output_name: str):
    request = pb.ModelInferRequest(model_name=model, model_version=str(version) if version else "")
    if inputs.images is not None:
        images = np.ascontiguousarray(inputs.images, dtype=np.uint8)
        request.inputs.add(name=input_name, datatype="UINT8", shape=list(images.shape))
        request.raw_input_contents.append(images.tobytes())
    else:
        texts = list(inputs.texts or [])
        request.inputs.add(name=input_name, datatype="BYTES", shape=[len(texts)])
        request.raw_input_contents.append(serialize_texts(texts))
    request.outputs.add(name=output_name)
    return request


def result_from_response(response, labels: list[str], top_k: int) -> ClassifyResult:
    tensor = response.outputs[0]
    probabilities = np.frombuffer(response.raw_output_contents[0], dtype="<f4").reshape(tuple(tensor.shape))
    indices, scores = top_classes(probabilities, top_k)
    predictions = predictions_from_arrays(indices, scores, labels)
    return ClassifyResult(
        model=response.model_name, version=int(response.model_version), predictions=predictions
    )


class V2Backend:
    """The scoring loop's backend over ModelInfer, pinned to one model version."""

    def __init__(
        self,
        target: str,
        model: str,
        *,
        version: int | None,
        labels: list[str],
        top_k: int,
        timeout: float | None,
        headers: Mapping[str, str] | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        retry: RetryPolicy | None = DEFAULT_RETRY,
    ) -> None:
        self._retrier = Retrier.of(retry)
        self._channel = (
            grpc.secure_channel(target, credentials, options=channel_options(target=target))
            if credentials is not None
            else grpc.insecure_channel(target, options=channel_options(target=target))
        )
        self._stub = pb_grpc.GRPCInferenceServiceStub(self._channel)
        self._model = model
        self._version = version
        self._labels = labels
        self._top_k = top_k
        self._timeout = timeout
        self._metadata = tuple((key.lower(), value) for key, value in (headers or {}).items()) or None
        # The tensor names come from the protocol's own ModelMetadata, as any V2 client would get them.
        try:
            described = self._stub.ModelMetadata(
                pb.ModelMetadataRequest(name=model, version=str(version) if version else ""),
                timeout=timeout,
                metadata=self._metadata,
            )
        except grpc.RpcError as error:
            self._channel.close()
            raise error_from_rpc(error) from None
        self._input_name = described.inputs[0].name
        self._output_name = described.outputs[0].name

    def request(self, inputs: Inputs) -> pb.ModelInferRequest:
        """The ModelInfer request for ``inputs``, with the tensor names the server described."""
        return infer_request(
            self._model, self._version, inputs, input_name=self._input_name, output_name=self._output_name
        )

    def submit(self, inputs: Inputs) -> RetryingFuture[pb.ModelInferResponse, ClassifyResult]:
        """ModelInfer is as idempotent as Classify: it retries UNAVAILABLE per the same policy."""
        request = self.request(inputs)

        def start(remaining: float | None) -> grpc.Future:
            return self._stub.ModelInfer.future(request, timeout=remaining, metadata=self._metadata)

        def convert(response: pb.ModelInferResponse) -> ClassifyResult:
            return result_from_response(response, self._labels, self._top_k)

        return RetryingFuture(start, convert, self._retrier, Deadline(self._timeout))

    def close(self) -> None:
        self._channel.close()
